import pytest
import torch


@pytest.fixture
def wholly_float64(monkeypatch):
    """Qwen2's RMSNorm and rotary embedding in the model's dtype, so that a float64 model is float64 throughout.

    transformers/models/qwen2/modeling_qwen2.py runs Qwen2RMSNorm.forward in float32 (`hidden_states.to(torch.float32)`)
    and Qwen2RotaryEmbedding.forward on float32 angles whatever the model's dtype: a float64 model still
    carries float32 rounding there, which differs between layouts and CPUs. The same formulas, in the
    input's dtype; for a float32 model nothing changes.
    """
    from transformers.models.qwen2 import modeling_qwen2 as qwen2

    def rms_norm(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    def rotary(self, x, position_ids):  # the default rope type: no dynamic update to apply
        freqs = position_ids[..., None].to(x.dtype) * self.inv_freq.to(device=x.device, dtype=x.dtype)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling

    monkeypatch.setattr(qwen2.Qwen2RMSNorm, "forward", rms_norm)
    monkeypatch.setattr(qwen2.Qwen2RotaryEmbedding, "forward", rotary)
