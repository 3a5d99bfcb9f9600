"""probgen.data"""
