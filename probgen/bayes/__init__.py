"""probgen.bayes"""
