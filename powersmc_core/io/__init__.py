"""Reading and writing runs: the JSON codec of records and trace files."""
