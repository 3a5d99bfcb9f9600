"""probgen.train"""
