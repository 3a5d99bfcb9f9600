"""probgen.sampling"""
