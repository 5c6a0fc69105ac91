import pytest
import torch

from conftest import TINY_FAMILIES, randomize_, tiny_inputs, tiny_models
from univg_core.models import attention
from univg_core.configs import get_preset
from univg_core.models.transformer import Attention
from univg_core.models.unet3d import UNet3D


def run(unet, image_proj, x, t, context, clip_tokens, **kwargs):
    image_context = image_proj(clip_tokens) if image_proj is not None else None
    with torch.no_grad():
        return unet(x, t, context=context, image_context=image_context, fs=8, **kwargs)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_forward_shape_every_family(family):
    config, unet, image_proj = tiny_models(family)
    x, t, context, clip_tokens = tiny_inputs(config)
    out = run(unet, image_proj, x, t, context, clip_tokens)
    assert out.shape == (2, config.unet.out_channels, 4, 8, 8)
    assert torch.isfinite(out).all()
    assert out.abs().mean() > 1e-3  # the randomised network is not an identity / zero map


def test_combined_context_equals_separate_image_context():
    config, unet, image_proj = tiny_models("dynamicrafter_512")
    x, t, text, clip_tokens = tiny_inputs(config)
    image = image_proj(clip_tokens)
    with torch.no_grad():
        separate = unet(x, t, context=text, image_context=image, fs=8)
        text_part, image_part = unet.split_original_context(torch.cat([text, image], dim=1))
        combined = unet(x, t, context=text_part, image_context=image_part, fs=8)
    torch.testing.assert_close(separate, combined)


def test_image_tokens_change_output_only_with_image_branch():
    config, unet, image_proj = tiny_models("univg_base")
    x, t, text, clip_tokens = tiny_inputs(config)
    image_a = image_proj(clip_tokens)
    image_b = image_proj(clip_tokens.flip(1) + 1)
    with torch.no_grad():
        out_a = unet(x, t, context=text, image_context=image_a)
        out_b = unet(x, t, context=text, image_context=image_b)
        text_only = unet(x, t, context=text)
    assert (out_a - out_b).abs().max() > 1e-3
    assert (out_a - text_only).abs().max() > 1e-3
    # a text-only model ignores image tokens entirely
    config_t2v, unet_t2v, _ = tiny_models("videocrafter2_t2v_512")
    with torch.no_grad():
        torch.testing.assert_close(
            unet_t2v(x, t, context=text), unet_t2v(x, t, context=text, image_context=torch.randn(2, 16, 32))
        )


def test_long_prompt_context_is_not_split_without_image_tokens():
    """A 154-token prompt (ComfyUI long-prompt concat) must not be cut into text|image at 77."""
    config, unet, _ = tiny_models("videocrafter2_t2v_512")
    x, t, text, _ = tiny_inputs(config)
    long_text = torch.cat([text, torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(5))], dim=1)
    with torch.no_grad():
        assert (unet(x, t, context=long_text) - unet(x, t, context=text)).abs().max() > 1e-4


def test_per_frame_image_tokens_go_to_their_frames():
    config, unet, image_proj = tiny_models("dynamicrafter_512")
    per_frame = config.unet.image_tokens_per_frame
    frames = config.image_proj.video_length
    x, t, text, clip_tokens = tiny_inputs(config, frames=frames)
    image = image_proj(clip_tokens)
    assert image.shape[1] == frames * per_frame
    text_videos, image_frames = unet.split_context(text, image, batch=2, frames=frames)
    assert text_videos.shape == text.shape  # one set per video, shared by its frames in the attention
    assert image_frames.shape == (2 * frames, per_frame, 32)
    torch.testing.assert_close(image_frames[1], image[0, per_frame : 2 * per_frame])
    # with another frame count the whole set of tokens is shared by every frame
    _, image_shared = unet.split_context(text, image, batch=2, frames=3)
    assert image_shared.shape == (2, frames * per_frame, 32)


def test_learnable_image_gate_scales_image_branch():
    config, unet, image_proj = tiny_models("dynamicrafter_256")
    gates = [m.alpha for m in unet.modules() if isinstance(m, Attention) and hasattr(m, "alpha")]
    assert gates, "DynamiCrafter-256 has a learnable alpha per cross-attention"
    x, t, text, clip_tokens = tiny_inputs(config)
    before = run(unet, image_proj, x, t, text, clip_tokens)
    with torch.no_grad():
        for gate in gates:
            gate.fill_(-20.0)  # tanh -> -1: image branch switched off
        off = run(unet, image_proj, x, t, text, clip_tokens)
        text_only = unet(x, t, context=text, fs=8)
    assert (before - off).abs().max() > 1e-3
    torch.testing.assert_close(off, text_only)


def test_mca_matches_two_softmax_formula():
    torch.manual_seed(0)
    attn = randomize_(Attention(16, heads=2, head_dim=8, context_dim=12, image_branch=True, image_scale=0.5))
    x, text, image = torch.randn(3, 10, 16), torch.randn(3, 7, 12), torch.randn(3, 5, 12)
    with torch.no_grad():
        got = attn(x, text, image)
        q = attn.to_q(x).view(3, 10, 2, 8).transpose(1, 2)

        def branch(k_proj, v_proj, ctx):
            k = k_proj(ctx).view(3, -1, 2, 8).transpose(1, 2)
            v = v_proj(ctx).view(3, -1, 2, 8).transpose(1, 2)
            weights = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
            return weights @ v

        mixed = branch(attn.to_k, attn.to_v, text) + 0.5 * branch(attn.to_k_ip, attn.to_v_ip, image)
        expected = attn.to_out(mixed.transpose(1, 2).reshape(3, 10, 16))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_videos_context_serves_each_of_its_frames():
    """Cross-attention takes text and image tokens once per video for the (b t) rows of its
    frames: the same result as the tokens repeated for every frame (lvdm's way), and a batch that
    cannot be spread over the rows is refused."""
    torch.manual_seed(0)
    attn = randomize_(Attention(16, heads=2, head_dim=8, context_dim=12, image_branch=True, image_scale=0.5))
    videos, frames = 2, 3
    x = torch.randn(videos * frames, 10, 16)
    text, image = torch.randn(videos, 7, 12), torch.randn(videos, 5, 12)
    with torch.no_grad():
        shared = attn(x, text, image)
        repeated = attn(x, text.repeat_interleave(frames, 0), image.repeat_interleave(frames, 0))
        swapped = attn(x, text.flip(0), image.flip(0))
    torch.testing.assert_close(shared, repeated, atol=1e-6, rtol=1e-6)
    assert (shared - swapped).abs().amax() > 1e-3  # each video's rows read their own video's tokens
    with pytest.raises(ValueError, match="cannot serve 6 query rows"):
        attn(x, torch.randn(4, 7, 12))


def test_batch_chunked_attention_equals_single_call(monkeypatch):
    config, unet, image_proj = tiny_models("dynamicrafter_512")
    x, t, text, clip_tokens = tiny_inputs(config)
    whole = run(unet, image_proj, x, t, text, clip_tokens)
    monkeypatch.setattr(attention, "MAX_BATCH_HEADS", 5)
    chunked = run(unet, image_proj, x, t, text, clip_tokens)
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)


def test_relative_position_attention_matches_reference():
    torch.manual_seed(0)
    attn = randomize_(Attention(16, heads=2, head_dim=8, relative_length=3))
    x = torch.randn(4, 6, 16)
    with torch.no_grad():
        q, k, v = (proj(x).view(4, 6, 2, 8).transpose(1, 2) for proj in (attn.to_q, attn.to_k, attn.to_v))
        rel_k, rel_v = attn.relative_position_k(6, 6), attn.relative_position_v(6, 6)
        logits = torch.zeros(4, 2, 6, 6)
        for i in range(6):
            for j in range(6):
                distance = max(-3, min(3, j - i)) + 3
                assert torch.equal(rel_k[i, j], attn.relative_position_k.embeddings_table[distance])
                logits[:, :, i, j] = ((q[:, :, i] * k[:, :, j]).sum(-1) + (q[:, :, i] * rel_k[i, j]).sum(-1)) / 8**0.5
        probs = logits.softmax(-1)
        out = probs @ v + torch.einsum("bhij,ijd->bhid", probs, rel_v)
        expected = attn.to_out(out.transpose(1, 2).reshape(4, 6, 16))
        torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_track_fp32(dtype):
    config, unet, image_proj = tiny_models("univg_base")
    x, t, text, clip_tokens = tiny_inputs(config)
    reference = run(unet, image_proj, x, t, text, clip_tokens)
    unet.to(dtype)
    image_proj.to(dtype)
    low = run(unet, image_proj, x, t, text, clip_tokens)
    assert low.dtype == torch.float32  # output in the input's dtype
    relative = (low - reference).norm() / reference.norm()
    assert relative < (0.05 if dtype == torch.bfloat16 else 0.01), float(relative)


def test_gradient_checkpointing_same_gradients():
    config, unet, _ = tiny_models("videocrafter2_t2v_512")
    x, t, text, _ = tiny_inputs(config)
    unet.train()

    def grads():
        torch.manual_seed(0)  # same dropout masks in both runs
        unet.zero_grad()
        unet(x, t, context=text).square().mean().backward()
        return [p.grad.clone() for p in unet.parameters() if p.grad is not None]

    plain = grads()
    unet.gradient_checkpointing = True
    checkpointed = grads()
    assert len(plain) == len(checkpointed) > 100
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_bad_inputs_get_clear_errors():
    config, unet, _ = tiny_models("videocrafter2_t2v_512")
    x, t, text, _ = tiny_inputs(config)
    with pytest.raises(ValueError, match=r"\[B, 4, T, H, W\]"):
        unet(torch.randn(2, 8, 4, 8, 8), t, context=text)
    with pytest.raises(ValueError, match="multiples of 2"):
        unet(torch.randn(2, 4, 4, 9, 8), t, context=text)
    with pytest.raises(ValueError, match="context must be"):
        unet(x, t, context=torch.randn(2, 77, 31))
    with pytest.raises(ValueError, match="needs a text context"):
        unet(x, t)
    with pytest.raises(ValueError, match="batch 3"):
        unet(x, t, context=torch.randn(3, 77, 32))
    with pytest.raises(ValueError, match="one per batch"):
        unet(x, torch.tensor([1, 2, 3]), context=text)


def test_full_size_model_builds_on_meta():
    with torch.device("meta"):
        unet = UNet3D(get_preset("videocrafter2_t2v_512").unet)
    assert 1.3e9 < sum(p.numel() for p in unet.parameters()) < 1.5e9


def test_query_chunked_attention_equals_single_call(monkeypatch):
    """A budget for the score matrix that splits every spatial attention over its queries (and a
    row budget under one query's scores: a clear error)."""
    config, unet, image_proj = tiny_models("dynamicrafter_512")
    x, t, text, clip_tokens = tiny_inputs(config)
    whole = run(unet, image_proj, x, t, text, clip_tokens)
    calls = []
    real = attention.F.scaled_dot_product_attention

    def counted(q, k, v):
        calls.append((q.shape[2], k.shape[2]))
        return real(q, k, v)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", counted)
    monkeypatch.setattr(attention, "MAX_SCORE_BYTES", 2 * 4 * 2 * 64 * 4 * 5)  # 5 rows of 64 keys, batch 8 x 2 heads
    chunked = run(unet, image_proj, x, t, text, clip_tokens)
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)
    self_attention = [queries for queries, keys in calls if keys == 64]
    assert self_attention and max(self_attention) <= 5  # 64-token frames in pieces of 5 queries
    with pytest.raises(ValueError, match="one query's scores"):
        attention.query_chunk(8, 2, 64, 77, 100)
