"""How often a masked From Bank / To Bank cell can be copied from the neighbourhood: IBM AML's
account is (bank, account number), so every other event of the row's source (target) account
carries its bank. Prints the share of validation rows whose account has another event at or
before the row's time in the validation graph, which a sampled tree may show: the accuracy of the
rule "copy the bank from any neighbour event" where one is sampled. Usage:
python docs/scripts/bank_copy_rule.py [--data synthetic-aml]"""
import argparse

import numpy as np

from relssl.data.cache import load_prepared
from relssl.data.splits import VAL

parser = argparse.ArgumentParser()
parser.add_argument("--data", default="synthetic-aml")
args = parser.parse_args()

prep, _ = load_prepared(args.data)
src, dst, time = prep.src.numpy(), prep.dst.numpy(), prep.time.numpy().astype(np.int64)
visible = np.nonzero(prep.split <= VAL)[0]
rows = np.nonzero(prep.split == VAL)[0]
# every visible event once per endpoint, as sorted (node, time) keys
span = int(time.max()) + 1
keys = np.sort(np.concatenate([src[visible], dst[visible]]).astype(np.int64) * span
               + np.concatenate([time[visible], time[visible]]))
self_loop = (src[rows] == dst[rows]).astype(np.int64)
for column, node in (("From Bank", src[rows]), ("To Bank", dst[rows])):
    node = node.astype(np.int64)
    # incident entries at or before the row's time, less the row's own (two for a self-loop)
    incident = np.searchsorted(keys, node * span + time[rows], "right") - np.searchsorted(keys, node * span)
    print(f"{column}: {np.mean(incident - 1 - self_loop >= 1):.4f} of {len(rows):,} validation rows")
