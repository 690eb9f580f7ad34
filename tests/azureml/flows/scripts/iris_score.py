# An entry script in the style of the v1 iris sample (tabular-dataset-inference-iris).
import argparse
import pickle

from daskscore import EntryScript


def init():
    global iris_model
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, _ = parser.parse_known_args()
    with open(args.model, "rb") as f:
        iris_model = pickle.load(f)


def run(input_data):
    logger = EntryScript().logger
    num_rows, num_cols = input_data.shape
    logger.info(f"{__file__}: {num_rows} rows, {num_cols} columns")
    pred = iris_model.predict(input_data.iloc[:, :4].values)
    # cleanup output
    result = input_data.drop(input_data.columns[4:], axis=1)
    result["variety"] = pred
    return result
