"""probgen.evaluate"""
