"""probgen.models"""
