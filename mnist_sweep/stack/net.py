"""K copies of one net as one module: every parameter and buffer stacked on a leading copy axis.

The copies run through `torch.func.vmap` over `functional_call` on a weightless
skeleton of the net, so the arithmetic of all copies is shared (a convolution
of K copies becomes one grouped convolution) while each copy keeps its own
weights and its own BatchNorm statistics: vmap updates the stacked running
buffers in place, copy by copy, exactly as K separate modules would.

Being an ordinary nn.Module whose parameters are the stacked tensors, it works
unchanged with torch's elementwise optimizers (SGD, Adam, AdamW) and with
AveragedModel: each copy's update is its solo update, element for element.

Dropout is the one layer vmap cannot reproduce: a solo run draws its masks from
torch's global generator, and the K copies need K such streams. The skeleton's
dropout layers are replaced by `GivenMask`, which multiplies by a mask drawn
outside vmap (stack/dropout.py) per copy, from that copy's own stream.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


class GlobalMean(nn.Module):
    """AdaptiveAvgPool2d(1) as a mean: vmap has no batching rule for the pool's backward."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((-2, -1), keepdim=True)


class GivenMask(nn.Module):
    """A dropout layer whose (already scaled) mask is handed in before each call."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.mask is None:
            return x
        return x * self.mask


def _flat(name: str) -> str:
    # nn.Module attribute names may not hold dots.
    return name.replace(".", "__")


class StackedNet(nn.Module):
    """K copies of one architecture; `forward(x)` takes x of shape (K, B, ...)."""

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(list(models))
        self.copies = len(models)
        self.param_names = list(params)
        self.buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_flat(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_flat(name), value.clone())
        skeleton = copy.deepcopy(models[0]).to("meta")
        self.dropouts: list[GivenMask] = []
        for parent in skeleton.modules():
            for child_name, child in parent.named_children():
                if isinstance(child, nn.Dropout):
                    mask = GivenMask()
                    setattr(parent, child_name, mask)
                    self.dropouts.append(mask)
                elif isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1)):
                    setattr(parent, child_name, GlobalMean())
        # Kept out of the module tree: it holds no state, only the layout.
        self._skeleton = [skeleton]

    @property
    def skeleton(self) -> nn.Module:
        return self._skeleton[0]

    def _state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        params = {n: getattr(self, _flat(n)) for n in self.param_names}
        buffers = {n: getattr(self, _flat(n)) for n in self.buffer_names}
        return params, buffers

    def forward(
        self, x: Tensor, masks: Sequence[Tensor] = (), shared_input: bool = False
    ) -> Tensor:
        """Logits (K, B, classes); `masks` are the dropout layers' stacked masks, in
        layer order; `shared_input`: x is one batch (B, ...) that every copy reads."""
        skeleton = self.skeleton
        skeleton.train(self.training)

        def one(
            params: dict[str, Tensor],
            buffers: dict[str, Tensor],
            xb: Tensor,
            copy_masks: tuple[Tensor, ...],
        ) -> Tensor:
            for layer, mask in zip(self.dropouts, copy_masks, strict=False):
                layer.mask = mask
            try:
                return functional_call(skeleton, (params, buffers), (xb,))
            finally:
                for layer in self.dropouts:
                    layer.mask = None

        params, buffers = self._state()
        in_x = None if shared_input else 0
        return vmap(one, in_dims=(0, 0, in_x, 0))(params, buffers, x, tuple(masks))

    def copy_state_dict(self, k: int) -> dict[str, Tensor]:
        """Copy k's weights and buffers under the solo net's names, on the CPU."""
        params, buffers = self._state()
        return {n: t[k].detach().cpu().clone() for n, t in {**params, **buffers}.items()}

    def load_copy(self, k: int, state_dict: dict[str, Tensor]) -> None:
        """Put a solo net's state dict into copy k."""
        params, buffers = self._state()
        with torch.no_grad():
            for name, target in {**params, **buffers}.items():
                target[k].copy_(state_dict[name])

    def solo_name(self, flat: str) -> str:
        """The solo net's name of one of this module's parameters or buffers."""
        return {_flat(n): n for n in (*self.param_names, *self.buffer_names)}[flat]
