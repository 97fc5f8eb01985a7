"""The matching head against a reference written from the published formulas, and the
strict loader of the authors' checkpoint layout."""

import math

import pytest
import torch
import torch.nn.functional as F

from omama_core.errors import CheckpointMismatchError
from omama_core.modeling import MatchingHead, load_head, load_official_head, save_head


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def reference_forward(sd, source_desc, candidate_desc, source_tokens, target_tokens, heads):
    """Per-sample, per-head loops over the published block (state dict in the OFFICIAL names)."""
    c = source_tokens.shape[1]
    p = "CROSS_context_attn."

    def linear(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    def attend(queries, tokens, pos):
        context = tokens.flatten(1).T + pos[0]  # (L, C)
        q = linear(layer_norm(queries, sd[p + "norm_input.weight"], sd[p + "norm_input.bias"]), p + "query")
        kv_in = layer_norm(context, sd[p + "norm_input.weight"], sd[p + "norm_input.bias"])
        k, v = linear(kv_in, p + "key"), linear(kv_in, p + "value")
        d = c // heads
        outs = []
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            weights = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(d), dim=-1)
            outs.append(weights @ v[:, sl])
        y = linear(torch.cat(outs, dim=1), p + "project.0")  # no residual from the query
        hidden = linear(layer_norm(y, sd[p + "norm_output.weight"], sd[p + "norm_output.bias"]), p + "mlp.0")
        return y + linear(torch.nn.functional.gelu(hidden), p + "mlp.2")

    def project(desc, attended):
        x = torch.cat([attended, desc[:, :c], desc[:, c:]], dim=1)  # [o'; o; c]
        x = torch.relu(linear(x, "mlp.mlp.0"))
        x = torch.relu(linear(x, "mlp.mlp.2"))
        x = linear(x, "mlp.mlp.4")
        return x / x.norm(dim=1, keepdim=True)

    scores = []
    for b in range(source_desc.shape[0]):
        src = project(source_desc[b], attend(source_desc[b][:, :c], target_tokens[b], sd["pos_embed_T"]))
        cand = project(candidate_desc[b], attend(candidate_desc[b][:, :c], source_tokens[b], sd["pos_embed_Q"]))
        scores.append((cand @ src.T)[:, 0])
    return torch.stack(scores)


def official_state_dict(dim=32, hidden=24, source_grid=(3, 5), target_grid=(4, 4), seed=0):
    """A random state dict in the released checkpoint's key layout."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.3

    sd = {"pos_embed_T": r(1, target_grid[0] * target_grid[1], dim),
          "pos_embed_Q": r(1, source_grid[0] * source_grid[1], dim)}
    p = "CROSS_context_attn."
    for name in ("norm_input", "norm_output"):
        sd[p + name + ".weight"], sd[p + name + ".bias"] = 1 + r(dim), r(dim)
    for name in ("query", "key", "value", "project.0", "mlp.0", "mlp.2"):
        sd[p + name + ".weight"], sd[p + name + ".bias"] = r(dim, dim), r(dim)
    for name, shape in (("mlp.mlp.0", (hidden, 3 * dim)), ("mlp.mlp.2", (hidden, hidden)), ("mlp.mlp.4", (hidden, hidden))):
        sd[name + ".weight"], sd[name + ".bias"] = r(*shape), r(shape[0])
    for name, shape in (("mlp_visible.0", (hidden, 2 * dim)), ("mlp_visible.2", (8, hidden)),
                        ("mlp_visible.4", (4, 8)), ("mlp_visible.6", (2, 4))):
        sd[name + ".weight"], sd[name + ".bias"] = r(*shape), r(shape[0])
    return sd


def inputs(dim=32, source_grid=(3, 5), target_grid=(4, 4), batch=2, candidates=7):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, 1, 2 * dim, generator=g), torch.randn(batch, candidates, 2 * dim, generator=g),
            torch.randn(batch, dim, *source_grid, generator=g), torch.randn(batch, dim, *target_grid, generator=g))


def test_official_checkpoint_loads_strictly_and_matches_reference(tmp_path):
    sd = official_state_dict()
    path = tmp_path / "omama_exo2ego.pt"
    torch.save(sd, path)
    head = load_official_head(str(path), source_grid=(3, 5), target_grid=(4, 4))
    assert head.source_grid == (3, 5) and head.target_grid == (4, 4)
    args = inputs()
    with torch.no_grad():
        ours = head(*args)[:, 0]  # (B, K=1, N) -> (B, N)
    expected = reference_forward(sd, *args, heads=4)
    assert ours.shape == (2, 7)
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)
    assert ours.abs().max() <= 1.0 + 1e-5  # cosine scores


def test_official_published_sizes_infer_grids(tmp_path):
    sd = official_state_dict(dim=8, hidden=8, source_grid=(38, 68), target_grid=(50, 50))
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "wrapped.pt")
    head = load_official_head(str(tmp_path / "wrapped.pt"))
    assert head.source_grid == (38, 68) and head.target_grid == (50, 50)


def test_official_loader_names_missing_and_unexpected_keys(tmp_path):
    sd = official_state_dict()
    del sd["CROSS_context_attn.key.weight"]
    sd["extra_block.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match="extra_block.weight"):
        load_official_head(str(tmp_path / "bad.pt"), (3, 5), (4, 4))
    del sd["extra_block.weight"]
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match=r"CROSS_context_attn\.key\.weight"):
        load_official_head(str(tmp_path / "bad.pt"), (3, 5), (4, 4))


def test_official_loader_reports_shape_mismatch(tmp_path):
    sd = official_state_dict()
    sd["mlp.mlp.2.weight"] = torch.zeros(5, 5)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match=r"mlp\.mlp\.2\.weight"):
        load_official_head(str(tmp_path / "bad.pt"), (3, 5), (4, 4))


def test_position_embeddings_follow_the_token_grid():
    head = MatchingHead(dim=16, num_heads=4, source_grid=(3, 5), target_grid=(4, 4), hidden_dim=16)
    source_desc, candidate_desc, _, _ = inputs(dim=16)
    with torch.no_grad():  # other grids than the trained ones are interpolated, not an error
        scores = head(source_desc, candidate_desc, torch.randn(2, 16, 6, 10), torch.randn(2, 16, 2, 2))
    assert scores.shape == (2, 1, 7) and torch.isfinite(scores).all()


def test_omama_checkpoint_round_trip_and_visibility(tmp_path):
    head = MatchingHead(dim=16, source_grid=(3, 5), target_grid=(4, 4), hidden_dim=32, visibility=True)
    save_head(head, str(tmp_path / "head.pt"), step=3)
    loaded = load_head(str(tmp_path / "head.pt"))
    args = inputs(dim=16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*args), head(*args))
        logits = loaded.visibility_logit(torch.randn(2, 32), torch.randn(2, 2))  # fewer than TOP_SCORES
    assert logits.shape == (2,)
    with pytest.raises(CheckpointMismatchError, match="not an omama head checkpoint"):
        torch.save(official_state_dict(), tmp_path / "official.pt")
        load_head(str(tmp_path / "official.pt"))


def test_residual_head_starts_as_the_knn():
    """An untrained residual head scores every candidate nearly as the k-NN cosine of the raw
    descriptors, and its projection gets gradients (it is not at the zero saddle)."""
    torch.manual_seed(0)
    head = MatchingHead(dim=8, num_heads=2, source_grid=(3, 4), target_grid=(4, 4), hidden_dim=16,
                        visibility=True, residual=True)
    source, candidates = torch.randn(2, 1, 16), torch.randn(2, 5, 16)
    tokens_s, tokens_t = torch.randn(2, 8, 3, 4), torch.randn(2, 8, 4, 4)
    knn = (F.normalize(candidates, dim=-1) * F.normalize(source, dim=-1)).sum(-1)
    scores = head(source, candidates, tokens_s, tokens_t)[:, 0]
    assert torch.allclose(scores, knn, atol=0.02)
    assert head.visibility_logit(head.embed_sources(source, tokens_t)[:, 0], knn).shape == (2,)
    scores[:, 0].sum().backward()
    assert head.projection[-1].weight.grad.abs().sum() > 0
    assert head.projection[0].weight.grad.abs().sum() > 0
