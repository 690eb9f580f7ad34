# An entry script in the style of the v1 partition-by-folder sample: one mini-batch
# per combination of the partition keys, whose values come in mini_batch_context.
import os


def init():
    pass


def run(mini_batch, mini_batch_context):
    keys = mini_batch_context.partition_key_value
    sizes = sum(os.path.getsize(f) for f in mini_batch)
    print(f"{keys}: {len(mini_batch)} files")
    return [f"{keys['user']},{keys['genres']},{len(mini_batch)},{sizes}"]
