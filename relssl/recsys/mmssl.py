"""MMSSL (Wei et al., "Multi-Modal Self-Supervised Learning for Recommendation", WWW 2023).

Per modality m, item features are projected to the embedding size; users average the projections
of their items (modality views u_m, i_m). A generator proposes modality-aware user–item relations
from u_m·i_mᵀ; a WGAN-GP critic compares them with "real" relations (Gumbel-softmax-smoothed
observed interactions mixed with the collaborative model's own scores), which pulls each modality
view towards the collaborative signal. The top-k generated items per user, with the observed
ones, form a modality graph over which user and item IDs are aggregated; multi-head
self-attention fuses these modality-aware ID embeddings, LightGCN propagates them, and the
modality views are added on top. Cross-modal InfoNCE ties each modality-aware user embedding to
the final user embedding. Losses: BPR + reg, adversarial (generator and critic), contrastive.

With no item features, a learned item embedding table stands in for the content views (one view
named "id"), so the adversarial and contrastive parts still have something to work on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from relssl.errors import RelsslError
from relssl.options import option
from relssl.recsys.graph import Csr, mean_adjacency, propagate, symmetric_adjacency
from relssl.recsys.losses import bpr, gradient_penalty, info_nce
from relssl.recsys.models import Batch, Recommender, id_embedding
from relssl.recsys.relations import Relations, masked_scores, real_relations

REFRESH_USERS = 2048  # users scored at once when regenerating the modality graphs


@dataclass
class MMSSLParams:
    """MMSSL's hyper-parameters; defaults from the official code (HKUDS/MMSSL, Amazon-Baby)."""

    dim: int = option(64, "embedding size")
    layers: int = option(2, "LightGCN layers over the observed graph (MMSSL: weight_size [64, 64])")
    heads: int = option(4, "self-attention heads over the modality embeddings")
    dropout: float = option(0.2, "dropout on the projected item features")
    id_weight: float = option(0.36, "fused modality-aware ID embedding added to the ID embedding (id_cat_rate)")
    feat_weight: float = option(0.55, "modality views added to the final embeddings (model_cat_rate)")
    tau: float = option(0.5, "InfoNCE temperature")
    real_tau: float = option(0.005, "Gumbel-softmax temperature on the observed interactions")
    real_noise: float = option(1e-5, "scale of the Gumbel noise on the observed interactions (log_log_scale)")
    real_mix: float = option(100.0, "weight of the collaborative scores in the real relations (ui_pre_scale)")
    aug_topk: int = option(10, "generated items per user in each modality graph")
    critic_width: int = option(256, "critic hidden width: min(items/4, this), then half of it")
    adversarial: bool = option(True, "MMSSL ablation: --no-adversarial drops the adversarial self-augmentation")
    contrastive: bool = option(True, "MMSSL ablation: --no-contrastive drops the cross-modal contrastive loss")


@dataclass
class Encoded:
    users: torch.Tensor
    items: torch.Tensor
    view_users: dict[str, torch.Tensor]  # modality views u_m
    view_items: dict[str, torch.Tensor]  # modality views i_m
    id_users: dict[str, torch.Tensor]  # modality-aware user ID embeddings (over the modality graphs)


class Dropout(nn.Dropout):
    """nn.Dropout with its mask drawn from uniform numbers: torch's CPU bernoulli_ draws one number
    at a time, 5.7 ms for a 2,048 x 256 batch against 2.8 ms this way (one thread), and MMSSL drops
    out a dozen such tensors a step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        return x * (torch.rand_like(x) >= self.p).to(x.dtype) * (1 / (1 - self.p))


class Critic(nn.Sequential):
    """WGAN critic on a user's relation vector over all items: linear output and no batch norm,
    as WGAN-GP requires (the official code ends in 100·sigmoid and uses BatchNorm)."""

    def __init__(self, n_items: int, width: int):
        hidden = max(2, min(n_items // 4, width))
        super().__init__(nn.Linear(n_items, hidden), nn.LeakyReLU(0.2), Dropout(0.31),
                         nn.Linear(hidden, hidden // 2), nn.LeakyReLU(0.2), Dropout(0.5),
                         nn.Linear(hidden // 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self[0](x))

    def first_weight(self) -> torch.Tensor:
        """The first layer's weight transposed, [items, hidden], contiguous: taken once a step, so
        that every product and every gradient of it runs in this one layout (a gradient added into
        the transposed weight, strided, cost more than the product that made it)."""
        return self[0].weight.T.contiguous()

    def first(self, x: Relations, weight_t: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """The first layer's output on relation rows held as factors (relssl.recsys.relations),
        given ``first_weight()``."""
        bias = self[0].bias
        return x.linear(weight_t.detach(), bias.detach()) if frozen else x.linear(weight_t, bias)

    def head(self, z: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """The layers after the first, on its output ``z``; ``frozen``: no gradient reaches their weights."""
        for layer in list(self)[1:]:
            z = (F.linear(z, layer.weight.detach(), layer.bias.detach()) if frozen and isinstance(layer, nn.Linear)
                 else layer(z))
        return z.flatten()


class MMSSL(Recommender):
    def __init__(self, train: Csr, features: dict[str, torch.Tensor], p: MMSSLParams, device: torch.device):
        super().__init__()
        self.p, self.train_csr = p, train
        n_users, n_items = train.n_rows, train.n_cols
        self.user_id, self.item_id = id_embedding(n_users, p.dim), id_embedding(n_items, p.dim)
        self.feature_names = list(features)
        for name, feats in features.items():
            self.register_buffer(f"feat_{name}", feats, persistent=False)  # data, not weights
        self.proj = nn.ModuleDict({name: nn.Linear(f.shape[1], p.dim) for name, f in features.items()})
        for layer in self.proj.values():
            nn.init.xavier_uniform_(layer.weight)
        self.id_view = None if features else id_embedding(n_items, p.dim)
        self.dropout = Dropout(p.dropout)
        self.attention = nn.MultiheadAttention(p.dim, p.heads, batch_first=True)
        self.critic = Critic(n_items, p.critic_width) if p.adversarial else None
        # The real relations' Gumbel noise is drawn for observed items only (relssl.recsys.relations):
        # exact only while an unobserved item's weight, e^-(1 - noise·max gumbel)/tau, is nil.
        if p.adversarial and (1 - p.real_noise * (math.log(n_items) + 5)) / p.real_tau < 50:
            raise RelsslError(f"--real-noise {p.real_noise} with --real-tau {p.real_tau}: unobserved items would take "
                              f"weight in the real relations, which relssl draws for observed items only; keep "
                              f"(1 - real_noise * (ln items + 5)) / real_tau >= 50 (MMSSL's 1e-5 and 0.005 give 200)")
        users, items = train.rows(), train.indices
        self.adj = symmetric_adjacency(users, items, n_users, n_items).to(device)
        self.ui_mean = mean_adjacency(users, items, n_users, n_items).to(device)
        self.iu_mean = mean_adjacency(items, users, n_items, n_users).to(device)
        self.view_graphs = {name: (self.ui_mean, self.iu_mean) for name in self.views}

    @property
    def modalities(self) -> list[str]:
        return self.feature_names

    @property
    def views(self) -> list[str]:
        return self.feature_names or ["id"]

    def item_content(self) -> dict[str, torch.Tensor]:
        if self.id_view is not None:
            return {"id": self.dropout(self.id_view.weight)}
        return {name: self.dropout(self.proj[name](getattr(self, f"feat_{name}"))) for name in self.feature_names}

    def content_views(self) -> tuple[dict, dict]:
        """u_m: the mean of the user's items' content; i_m: the item's own content plus the mean of
        its users' u_m (kept so that items unseen in training still carry their content)."""
        view_users, view_items = {}, {}
        for name, content in self.item_content().items():
            view_users[name] = self.ui_mean @ content
            view_items[name] = content + self.iu_mean @ view_users[name]
        return view_users, view_items

    def fuse(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Multi-head self-attention across a node's modality embeddings, then their mean: the
        arithmetic of ``self.attention`` (nn.MultiheadAttention, whose weights these are) written out,
        because a node has one to three tokens and the fused kernel, built for long sequences, spent
        more than the whole product on its buffers. The mean over the tokens is taken before the value
        sum and the output projection, both linear in it."""
        att, x = self.attention, torch.stack(views, 1)  # [nodes, views, dim]
        n, v, d = x.shape
        heads = att.num_heads
        q, k, val = F.linear(x, att.in_proj_weight, att.in_proj_bias).view(n, v, 3, heads, d // heads).unbind(2)
        scores = (q[:, :, None] * k[:, None]).sum(-1) / math.sqrt(d // heads)  # [nodes, query, key, heads]
        weights = scores.softmax(2).mean(1)  # each key's weight, averaged over the queries
        return F.linear((weights[..., None] * val).sum(1).reshape(n, d), att.out_proj.weight, att.out_proj.bias)

    def encode(self) -> Encoded:
        view_users, view_items = self.content_views()
        id_users = {m: self.view_graphs[m][0] @ self.item_id.weight for m in self.views}
        id_items = {m: self.view_graphs[m][1] @ self.user_id.weight for m in self.views}
        users = self.user_id.weight + self.p.id_weight * F.normalize(self.fuse(list(id_users.values())), dim=1)
        items = self.item_id.weight + self.p.id_weight * F.normalize(self.fuse(list(id_items.values())), dim=1)
        users, items = propagate(self.adj, torch.cat([users, items]), self.p.layers).split([len(users), len(items)])
        users = users + self.p.feat_weight * sum(F.normalize(v, dim=1) for v in view_users.values())
        items = items + self.p.feat_weight * sum(F.normalize(v, dim=1) for v in view_items.values())
        return Encoded(users, items, view_users, view_items, id_users)

    def embed(self):
        enc = self.encode()
        return enc.users, enc.items

    def observed(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The users' training interactions as (position in ``users``, item), on the model's device:
        a few per user, so they are set in a users × items matrix by index, never by a dense mask."""
        rows, cols = self.train_csr.gather(users.cpu())  # the CSR stays on the CPU
        return rows.to(self.adj.device), cols.to(self.adj.device)

    def losses(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        enc = self.encode()
        out = bpr(enc.users[batch.users], enc.items[batch.pos], enc.items[batch.neg])
        if self.p.contrastive:
            out["cl"] = sum(info_nce(enc.id_users[m][batch.users], enc.users[batch.users], self.p.tau)
                            for m in self.views)
        if self.p.adversarial:
            out.update(self.adversarial_losses(batch.users, enc, gen))
        return out

    def adversarial_losses(self, users: torch.Tensor, enc: Encoded, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """critic: E[critic(generated)] - E[critic(real)] + gradient penalty (reaches only the
        critic's weights); adv: -E[critic(generated)] through a frozen copy of the critic (reaches
        only the recommender's weights). Every relation row is held as factors, never as a vector
        over all items (relssl.recsys.relations)."""
        observed = self.observed(users)
        uniform = torch.rand(len(observed[0]), generator=gen).to(enc.users.device)  # Gumbel noise, observed items
        with torch.no_grad():
            real = real_relations(enc.users[users], enc.items, observed, uniform, self.p.real_tau, self.p.real_noise,
                                  self.p.real_mix)
        fakes = [masked_scores(enc.view_users[m][users], enc.view_items[m], observed).normalized() for m in self.views]
        weight_t = self.critic.first_weight()
        # Every view's generated relations face the same real ones: the critic scores them once.
        z_real = self.critic.first(real, weight_t)
        z_fake = torch.cat([self.critic.first(f.detach(), weight_t) for f in fakes])
        alpha = torch.rand(len(z_fake), 1, generator=gen).to(z_fake.device)
        mixed = alpha * z_real.repeat(len(self.views), 1) + (1 - alpha) * z_fake  # the first layer is affine
        adv = self.critic.head(torch.cat([self.critic.first(f, weight_t, frozen=True) for f in fakes]), frozen=True)
        return {"critic": self.critic.head(z_fake).mean() - self.critic.head(z_real).mean(),
                "gp": gradient_penalty(self.critic, mixed, weight_t), "adv": -adv.mean()}

    @torch.no_grad()
    def refresh(self) -> None:
        """Rebuild each modality graph: observed interactions plus the top-k unobserved items of
        the modality's generated relations, scored a batch of users at a time."""
        was_training = self.training
        self.eval()
        view_users, view_items = self.content_views()
        n_users, n_items = self.train_csr.n_rows, self.train_csr.n_cols
        k = min(self.p.aug_topk, n_items)
        for m in self.views:
            gen_items = []
            for users in torch.arange(n_users, device=self.adj.device).split(REFRESH_USERS):
                scores = view_users[m][users] @ view_items[m].T
                scores.index_put_(self.observed(users), scores.new_full((), -torch.inf))
                gen_items.append(scores.topk(k, dim=1).indices.flatten())
            rows = torch.cat([self.train_csr.rows(), torch.arange(n_users).repeat_interleave(k)]).to(self.adj.device)
            cols = torch.cat([self.train_csr.indices.to(self.adj.device), *gen_items])
            self.view_graphs[m] = (mean_adjacency(rows, cols, n_users, n_items),
                                   mean_adjacency(cols, rows, n_items, n_users))
        self.train(was_training)
