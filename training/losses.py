"""Loss terms of docs/original.md, 'Losses' (weights come from TrainConfig; the caller multiplies)."""
import torch
import torch.nn.functional as F


def lsgan_d_loss(disc, real, fake):
    """Discriminator LSGAN loss 1/2 [MSE(D(fake), 0) + MSE(D(real), 1)], real and fake in one forward pass."""
    _, logits = disc(torch.cat([real, fake.detach()], 0))
    r, f = logits.float().chunk(2, 0)
    return 0.5 * (F.mse_loss(f, torch.zeros_like(f)) + F.mse_loss(r, torch.ones_like(r)))


def lsgan_g_loss(disc, fake):
    """Generator LSGAN loss MSE(D(fake), 1). ``disc`` should be the bare module with frozen parameters, so this
    pass neither computes nor all-reduces discriminator gradients."""
    _, logits = disc(fake)
    logits = logits.float()
    return F.mse_loss(logits, torch.ones_like(logits))


def frames_on_channels(x, clips):
    """(clips*5, 3, H, W) frames, clip after clip -> (clips, 15, H, W): the temporal discriminator's input."""
    return x.reshape(clips, -1, x.shape[-2], x.shape[-1])


def ramp(weight: float, step: int, warmup_steps: int) -> float:
    """A loss weight ramped linearly from 0 to ``weight`` over the first warmup_steps steps (the sync term: the
    original's README notes strong oscillation when it is strong from the start; the adversarial terms: see
    TrainConfig.adv_warmup_steps)."""
    if warmup_steps <= 0:
        return float(weight)
    return float(weight) * min(1.0, (step + 1) / warmup_steps)


def lr_factor(non_decay: int, decay: int):
    """Learning-rate factor of epoch k (epoch-based training): 1 for the first non_decay epochs, then a
    linear decay; clamped to [0, 1] so a run that goes past the planned epochs never gets a negative lr
    (docs/original.md, 'Optimisation')."""
    def factor(k):
        return min(1.0, max(0.0, 1.0 - max(0, k - non_decay) / (decay + 1)))
    return factor


def step_lr_factor(step: int, total_steps: int, non_decay: int, decay: int) -> float:
    """The same schedule in steps, for step-based training (--max_steps): constant over the first
    non_decay / (non_decay + decay) of ``total_steps``, then a linear decay that reaches ~0 at the last step;
    clamped to [0, 1]. A pure function of the step, so a resumed run follows it exactly."""
    flat = int(round(total_steps * non_decay / max(1, non_decay + decay)))
    decay_steps = total_steps - flat
    return min(1.0, max(0.0, 1.0 - max(0, step - flat) / (decay_steps + 1)))
