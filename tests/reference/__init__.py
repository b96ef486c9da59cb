"""Reference implementations that tests compare the product against (not product code)."""
