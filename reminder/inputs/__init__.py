"""Loaders: the configuration, the registrant export and the templates, turned into the
core's values.
"""
