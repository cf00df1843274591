import pytest
import torch

from relssl.data.prepare import prepare
from relssl.data.splits import TRAIN
from relssl.nn.backbone import Backbone, ModelConfig
from relssl.nn.gnn import TreeGNN
from relssl.graph.batch import BatchBuilder
from tests.conftest import toy_relational


@pytest.mark.parametrize("kind,reverse", [("gine", False), ("gine", True), ("pna", False), ("pna", True)])
def test_tree_gnn_roots_equal_full_message_passing(kind, reverse):
    """TreeGNN computes each layer for the nodes and edges a later layer reads only (relssl.nn.gnn):
    the roots' states and their gradients are those of every layer on every node and edge."""
    prep = prepare(toy_relational(2000))
    rows = prep.rows(TRAIN)[:32]
    batch = BatchBuilder(prep, TRAIN, [5, 3, 2])(rows, torch.Generator().manual_seed(0))
    sub = batch.graph.sub
    torch.manual_seed(0)
    gnn = TreeGNN(8, 3, kind, torch.tensor([3, 5, 2, 1]), reverse)
    h0 = torch.randn(sub.node_entity.numel(), 8, requires_grad=True)
    e0 = torch.randn(sub.edge_id.numel(), 8, requires_grad=True)
    pruned = gnn(h0, sub.edge_index, e0, sub.edge_hop, sub.edge_dir)
    h, e = h0, e0
    for layer in gnn.layers:  # every layer on every edge
        h, e = layer(h, sub.edge_index, e, sub.edge_dir)
    roots = torch.arange(2 * len(rows))
    assert pruned.shape == (len(roots), 8)
    assert torch.allclose(pruned, h[roots], atol=1e-5)
    weight = torch.randn(len(roots), 8)
    for a, b in zip(torch.autograd.grad((pruned * weight).sum(), [h0, e0]),
                    torch.autograd.grad((h[roots] * weight).sum(), [h0, e0])):
        assert torch.allclose(a, b, atol=1e-5)


def test_backbone_shapes_with_and_without_graph():
    for graph in (True, False):
        prep = prepare(toy_relational(1000, graph=graph))
        model = Backbone(prep, ModelConfig(channels=16, heads=2, fanouts=[4, 2]))
        batch = BatchBuilder(prep, TRAIN, [4, 2])(prep.rows(TRAIN)[:50], torch.Generator().manual_seed(0))
        rep = model(batch)
        assert rep.fused.shape == (50, 16)
        assert rep.tokens.shape == (50, len(prep.events.columns), 16)
        assert (rep.graph is None) != graph
        if graph:
            assert rep.graph.shape == (50, 32)


def test_pna_backbone_runs():
    prep = prepare(toy_relational(1000))
    model = Backbone(prep, ModelConfig(channels=16, heads=2, gnn="pna", fanouts=[4, 2]))
    batch = BatchBuilder(prep, TRAIN, [4, 2])(prep.rows(TRAIN)[:50], torch.Generator().manual_seed(0))
    rep = model(batch)
    rep.fused.sum().backward()
    assert torch.isfinite(rep.fused).all()


def test_the_written_out_ft_transformer_is_pytorch_frames():
    """Same weights, same dropout masks: values and gradients equal FTTransformerConvs' own forward
    to float rounding (the rows' order in its products is the module's only where dropout draws
    masks), in training with and without dropout and in evaluation, also under bf16 autocast. A
    mask drawn in another order would differ by O(1), not by rounding."""
    from torch_frame.nn import FTTransformerConvs

    from relssl.nn.row_encoder import ft_transformer

    torch.manual_seed(0)
    x = torch.randn(16, 7, 32, requires_grad=True)
    weights = torch.randn(16, 7, 32), torch.randn(16, 32)  # a loss whose gradients are not rounding noise

    def gradients(outputs, inputs):
        return torch.autograd.grad(sum((out * w).sum() for out, w in zip(outputs, weights)), inputs)

    for dropout in (0.3, 0.0):
        convs = FTTransformerConvs(32, num_layers=2, nhead=4, dropout=dropout)
        for training in (True, False):
            convs.train(training)
            torch.manual_seed(1)
            expected = convs(x)
            torch.manual_seed(1)
            got = ft_transformer(convs, x)
            assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(got, expected))
            inputs = [x, *convs.parameters()]
            for a, b in zip(gradients(got, inputs), gradients(expected, inputs)):
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    parameters = list(convs.parameters())  # the weights' gradients alone (constant cells)
    cells = x.detach()
    for a, b in zip(*(gradients(outs, parameters) for outs in (ft_transformer(convs, cells), convs(cells)))):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    convs.requires_grad_(False)  # frozen weights (a probe): the cells' gradients alone
    got, expected = ft_transformer(convs, x), convs(x)
    assert torch.allclose(*(gradients(outs, [x])[0] for outs in (got, expected)), rtol=1e-4, atol=1e-5)
    convs = FTTransformerConvs(32, num_layers=2, nhead=4, dropout=0.3).train()
    for layer in convs.transformer.layers:  # only the projection's own dropout left: its mask order still holds
        layer.self_attn.dropout, layer.dropout.p, layer.dropout2.p = 0.0, 0.0, 0.0
    torch.manual_seed(4)
    expected = convs(x)
    torch.manual_seed(4)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(ft_transformer(convs, x), expected))
    convs = FTTransformerConvs(32, num_layers=2, nhead=4, dropout=0.3)
    torch.manual_seed(2)
    assert not torch.allclose(ft_transformer(convs.train(), x)[0], ft_transformer(convs, x)[0])  # dropout is on
    convs.eval()
    cells = x.detach().bfloat16().requires_grad_()
    inputs = [cells, *convs.parameters()]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 cells (timestamps, vectors) promote as there
        expected = convs(cells)
        got = ft_transformer(convs, cells)
    assert got[0].dtype == expected[0].dtype
    assert all(torch.allclose(a, b, rtol=2e-2, atol=2e-2) for a, b in zip(got, expected))
    for a, b in zip(gradients(got, inputs), gradients(expected, inputs)):
        assert a.dtype == b.dtype and torch.allclose(a.float(), b.float(), rtol=5e-2, atol=2e-2 * b.abs().max().item())



def test_flat_row_encoder_sums_the_cells_pytorch_frame_encodes():
    """The neighbour-row encoder sums cells without building them (relssl.nn.row_encoder.summed_cells):
    values and gradients equal pytorch-frame's per-cell embeddings summed, for unknown categories,
    missing numbers (the training mean), two timestamp columns and vectors."""
    import numpy as np
    import pandas as pd
    import torch_frame

    from relssl.data.encoding import encode_table
    from relssl.nn.row_encoder import FlatRowEncoder, column_encoder

    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n), "c": rng.integers(0, 4, n).astype(str),
                       "d": rng.integers(0, 3, n).astype(str),
                       "t": pd.to_datetime(1_600_000_000 + rng.integers(0, 10**7, n), unit="s"),
                       "t2": pd.to_datetime(1_300_000_000 + rng.integers(0, 10**9, n), unit="s")})
    df.loc[::7, "x"] = np.nan
    df.loc[200:, "c"] = "unseen"  # not among the training rows' categories: unknown (-1)
    stypes = {"x": torch_frame.numerical, "y": torch_frame.numerical, "c": torch_frame.categorical,
              "d": torch_frame.categorical, "t": torch_frame.timestamp, "t2": torch_frame.timestamp,
              "v": torch_frame.embedding}
    enc = encode_table(df, stypes, np.arange(200), vectors={"v": rng.normal(size=(n, 3)).astype(np.float32)})
    assert (enc.tf.feat_dict[torch_frame.categorical] < 0).any()
    torch.manual_seed(0)
    flat = FlatRowEncoder(column_encoder(enc, 16), 16)
    for p in flat.parameters():  # weights away from their initial zeros and padding, so every path counts
        p.data.normal_()
    weight = torch.randn(n, 16)
    got = flat(enc.tf)
    expected = flat.proj(flat.cells(enc.tf)[0].sum(1))
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
    params = list(flat.parameters())
    for a, b in zip(torch.autograd.grad((got * weight).sum(), params), torch.autograd.grad((expected * weight).sum(), params)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
