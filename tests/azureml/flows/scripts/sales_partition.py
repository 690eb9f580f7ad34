# An entry script in the style of the v1 partition-by-column sample: one DataFrame
# per (store, brand), the key values in mini_batch_context.
import pandas as pd


def init():
    pass


def run(mini_batch, mini_batch_context):
    keys = mini_batch_context.partition_key_value
    assert set(mini_batch["store"]) == {keys["store"]}, mini_batch
    assert set(mini_batch["brand"]) == {keys["brand"]}, mini_batch
    return pd.DataFrame(
        {
            "store": [keys["store"]],
            "brand": [keys["brand"]],
            "rows": [len(mini_batch)],
            "quantity": [int(mini_batch["quantity"].sum())],
        }
    )
