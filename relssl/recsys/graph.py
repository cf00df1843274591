"""The user–item interaction graph as CSR rows and sparse normalised adjacencies.

Everything here is vectorised over edges: no Python loop touches a user, an item or an edge.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


@dataclass
class Csr:
    """Rows (users) -> sorted column ids (items); duplicates removed."""

    indptr: torch.Tensor
    indices: torch.Tensor
    n_cols: int
    keys: torch.Tensor  # row * n_cols + col, sorted: membership tests by binary search

    @classmethod
    def from_pairs(cls, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> "Csr":
        keys = torch.unique(rows.long() * n_cols + cols.long())  # sorted by row, then column
        rows, cols = keys // n_cols, keys % n_cols
        indptr = torch.zeros(n_rows + 1, dtype=torch.long)
        indptr[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
        return cls(indptr, cols, n_cols, keys)

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def degree(self) -> torch.Tensor:
        return self.indptr.diff()

    def rows(self) -> torch.Tensor:
        """The row id of each stored entry."""
        return torch.repeat_interleave(torch.arange(self.n_rows), self.degree)

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Entries of the given rows as (position of the row in ``rows``, column)."""
        counts = self.degree[rows]
        local = torch.repeat_interleave(torch.arange(len(rows)), counts)
        starts = torch.repeat_interleave(self.indptr[rows], counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        return local, self.indices[starts + offsets]

    def contains(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Whether each (row, col) pair is stored."""
        if len(self.keys) == 0:
            return torch.zeros(len(rows), dtype=torch.bool)
        query = rows.long() * self.n_cols + cols.long()
        pos = torch.searchsorted(self.keys, query).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == query


@dataclass
class SparseMatrix:
    """A fixed sparse matrix A, multiplied into dense matrices (``A @ x``) with gradients for x.

    A and its transpose are kept as CSR: torch's own sparse product transposes and coalesces a COO
    matrix in every backward pass. For a 19,445 x 7,050 mean adjacency (314 k entries) times 64
    columns, forward and backward take 10.5 ms this way against 37 ms (one CPU thread)."""

    matrix: torch.Tensor
    transpose: torch.Tensor  # the same tensor when A is symmetric

    @classmethod
    def from_entries(cls, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int],
                     symmetric: bool = False) -> "SparseMatrix":
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape, check_invariants=False).coalesce()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": products of CSR and dense are stable
            warnings.simplefilter("ignore", UserWarning)
            matrix = coo.to_sparse_csr()
            return cls(matrix, matrix if symmetric else coo.t().coalesce().to_sparse_csr())

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def to(self, device: torch.device | str) -> "SparseMatrix":
        matrix = self.matrix.to(device)
        return SparseMatrix(matrix, matrix if self.transpose is self.matrix else self.transpose.to(device))

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return _SparseProduct.apply(self.matrix, self.transpose, x)


class _SparseProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matrix: torch.Tensor, transpose: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.transpose = transpose
        return matrix @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, ctx.transpose @ grad


def symmetric_adjacency(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> SparseMatrix:
    """LightGCN's D^-1/2 A D^-1/2 over the (users + items) bipartite graph."""
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    deg = torch.bincount(rows, minlength=n).float()
    inv_sqrt = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
    return SparseMatrix.from_entries(rows, cols, inv_sqrt[rows] * inv_sqrt[cols], (n, n), symmetric=True)


def mean_adjacency(rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> SparseMatrix:
    """Row-normalised: each row averages its neighbours (rows without neighbours stay zero)."""
    deg = torch.bincount(rows, minlength=n_rows).float().clamp(min=1)
    return SparseMatrix.from_entries(rows, cols, 1.0 / deg[rows], (n_rows, n_cols))


def propagate(adj: SparseMatrix, x: torch.Tensor, layers: int) -> torch.Tensor:
    """Mean of the layer outputs x, Ax, A²x, ... (LightGCN: no weights, no non-linearity)."""
    out, h = x, x
    for _ in range(layers):
        h = adj @ h
        out = out + h
    return out / (layers + 1)
