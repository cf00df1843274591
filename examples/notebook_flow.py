"""The notebook flow of docs/api.md: pre-train, embed, fine-tune with 10 % of the labels, predict
new rows, reload. A small budget on a small generated file; the test suite runs this script."""
import sys
import tempfile
from pathlib import Path

import relssl
from relssl.data.aml_generator import write_aml

folder = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
write_aml(folder / "aml", rows=6000, seed=0, laundering_rate=0.02, name="Small")  # IBM AMLworld format
data = str(folder / "aml" / "Small_Trans.csv")
small = dict(channels=16, heads=2, row_layers=1, fanouts=[4, 2], train_rows_per_epoch=3000, eval_rows=1000)

model = relssl.pretrain(data, out=folder / "pre", objectives=["mcm"], epochs=3, **small)
print("MCM accuracy", round(model.metrics["mcm/acc"], 3), "against its reference", round(model.metrics["mcm/acc_ref"], 3))
emb = model.embed()                                                  # every event and account
print(emb.shape, emb["kind"].value_counts().to_dict())

clf = relssl.finetune(data, out=folder / "ft", init=model, task="edge:Is Laundering", mode="probe",
                      label_fraction=0.1)
print("test PR-AUC", round(clf.metrics["test/pr_auc"], 3))
predictions = clf.predict(data)                                      # any file of the same format
print(predictions.head(3))
assert relssl.load(folder / "pre").embed().equals(emb)
