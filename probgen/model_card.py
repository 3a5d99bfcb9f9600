"""The README.md of a pretrained folder: a model card in the Hugging Face Hub's conventions.

YAML front matter (``library_name: probgen``, ``tags``: probgen,
generative-model, the family, its kind, the data set), then a table of what
the model is (family, data, data map, likelihood kind, parameters, options,
library and format versions), the metrics of its run by split, how to load
it, and the run's resolved config with the command that trains it.
Everything comes from config.json (``probgen.pretrained``), so the card never
says what the folder does not hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["model_card"]

_LIKELIHOOD_TEXT = {
    "exact": "exact: `log_prob` is log p(x) in nats",
    "estimate": "estimate: `log_prob` is an unbiased estimate of log p(x) in nats",
    "bound": "bound: `log_prob` is a lower bound on log p(x) (an ELBO or a dequantised bound)",
    "unnormalized": "unnormalized: `log_prob` is −E(x), log p(x) up to the unknown log Z",
    "none": "none: no density; a sampler (use sample metrics)",
}


def model_card(config: Mapping[str, Any]) -> str:
    """README.md for a pretrained folder: Hub front matter, then what the model is and does."""
    family, spec = config["family"], config["spec"]
    data = config.get("data") or {}
    run = config.get("run") or {}
    kind = config["family_class"].split(":")[0].split(".")
    tags = ["probgen", "generative-model", family, *kind[2:3], *([data["name"]] if data else [])]
    front = yaml.safe_dump({"library_name": "probgen", "tags": list(dict.fromkeys(tags))})
    title = f"{family} on {data['name']}" if data else family
    rows = [
        ("family", f"`{family}` (`{config['family_class']}`), as `{config['structure']}`"),
        ("data", _describe_data(spec, data)),
        ("data map", _describe_map(config.get("data_map"), spec)),
        ("likelihood", _LIKELIHOOD_TEXT[config["likelihood"]]),
        ("parameters", f"{config['parameters']:,} ({config['dtype']})"),
        ("options", f"`{json.dumps(config['options'])}`"),
        ("probgen", f"{config['library_version']} (folder format {config['format_version']})"),
    ]
    lines = ["---", front.rstrip(), "---", "", f"# {title}", ""]
    lines += [
        "A generative model of probgen (every family of generative model behind one protocol).",
        "",
    ]
    lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    lines += _metrics_section(config.get("metrics"))
    lines += [
        "## Use",
        "",
        "```python",
        "import probgen",
        "",
        'model = probgen.from_pretrained("path/to/this/folder")',
        "x = model.sample(16)" + ("  # pass condition= for p(x | c)" if spec["condition"] else ""),
        "```",
        "",
        "Loading reads config.json and model.safetensors only; nothing is unpickled.",
        "",
    ]
    if run.get("config"):
        steps = f" for {run['steps']} steps" if run.get("steps") is not None else ""
        lines += [
            "## Training",
            "",
            f"Run `{run.get('name')}`, trained{steps} by `probgen train config.yaml` "
            "with this config.yaml (the run's resolved config):",
            "",
            "```yaml",
            yaml.safe_dump(run["config"], sort_keys=False).rstrip(),
            "```",
            "",
        ]
    return "\n".join(lines)


def _describe_data(spec: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    shape = tuple(spec["event_shape"])
    values = "continuous" if spec["levels"] is None else f"{spec['levels']} integer levels"
    condition = spec["condition"]
    given = (
        ""
        if condition is None
        else f", conditioned on {condition['classes']} classes"
        if "classes" in condition
        else f", conditioned on a vector of shape {tuple(condition['shape'])}"
    )
    options = f" {json.dumps(data['options'])}" if data.get("options") else ""
    named = f"`{data['name']}`{options}; " if data else ""
    return f"{named}events of shape {shape}, {values}{given}"


def _describe_map(data_map: Mapping[str, Any] | None, spec: Mapping[str, Any]) -> str:
    if spec["levels"] is not None:
        return (
            f"uniform dequantization of the {spec['levels']} levels, unless the family models them"
        )
    if data_map is None:
        return "none (the family sees the data as they are)"
    return f"x = shift + scale · z, fitted by `{data_map['method']}` (stored in the weights)"


def _metrics_section(metrics: Mapping[str, Any] | None) -> list[str]:
    if not metrics:
        return []
    lines = []
    for split in ("test", "validation", "train"):
        table = metrics.get(split)
        if not isinstance(table, dict) or not table:
            continue
        lines += [f"## Metrics ({split} split)", "", "| metric | value | ± | kind | unit |"]
        lines.append("|---|---:|---:|---|---|")
        for name, m in table.items():
            stderr = "" if m.get("stderr") is None else f"{m['stderr']:.2g}"
            value = m.get("value")
            shown = f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else value
            lines.append(
                f"| {name} | {shown} | {stderr} | {m.get('kind', '')} | {m.get('unit', '')} |"
            )
        lines.append("")
    return lines
