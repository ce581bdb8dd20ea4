"""The paper's reported numbers as data (reported.yaml) and their loader."""
