"""Write one folder per store and an MLTable that reads them back (command job)."""
import argparse
import os

import mltable  # the scripts of command jobs import it; daskscore provides it
import pandas as pd

parser = argparse.ArgumentParser()
parser.add_argument("--input")
parser.add_argument("--columns")
parser.add_argument("--output")
args = parser.parse_args()

table = pd.read_csv(args.input)
column = args.columns
os.makedirs(args.output, exist_ok=True)
for value, rows in table.groupby(column):
    folder = os.path.join(args.output, str(value))
    os.makedirs(folder, exist_ok=True)
    rows.drop(columns=[column]).to_csv(os.path.join(folder, "data.csv"), index=False)
with open(os.path.join(args.output, "MLTable"), "w") as f:
    f.write(
        "paths:\n"
        "  - pattern: ./*/data.csv\n"
        "transformations:\n"
        "  - read_delimited:\n"
        "      delimiter: ','\n"
        "      header: all_files_same_headers\n"
        "  - extract_columns_from_partition_format:\n"
        f"      partition_format: '{{{column}}}/data.csv'\n"
    )
check = mltable.load(args.output).to_pandas_dataframe()
print(f"partitioned {len(check)} rows into {check[column].nunique()} folders")
