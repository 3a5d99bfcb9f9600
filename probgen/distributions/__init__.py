"""probgen.distributions"""
