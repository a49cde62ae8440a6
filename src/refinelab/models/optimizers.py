"""The optimizer registry (``train.optimizer``), and per-layer learning rates for fine-tuning.

Keras optimizers have one learning rate. Fine-tuning a transfer base wants a smaller one for the
base than for the head: :class:`PerLayerRates` multiplies the rate of given variables (by path). The multipliers are part of the optimizer's config, so a saved model reloads with them
(``load_model`` finds the classes once this module is imported), on any Keras backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from refinelab.core.registry import Registry
from refinelab.params.names import OPTIMIZERS
from refinelab.params.schema import TrainParams


class PerLayerRates:
    """Mixin for a Keras optimizer: ``rate_multipliers`` maps variable paths (e.g. every variable of a
    transfer base) to the factor their learning rate, and decoupled weight decay, are multiplied by."""

    def __init__(self, *args, rate_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rate_multipliers = dict(rate_multipliers or {})
        self._factors: dict[int, float] = {}

    def build(self, variables):
        super().build(variables)
        # By index, the optimizer's own key for a variable: a backend may hand update_step its backing variable.
        self._factors = {self._get_variable_index(variable): self.rate_multipliers[variable.path]
                         for variable in variables if variable.path in self.rate_multipliers}

    def _use_weight_decay(self, variable) -> bool:
        # A scaled variable's decay is applied in update_step, at its own rate.
        return self._get_variable_index(variable) not in self._factors and super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factors.get(self._get_variable_index(variable))
        if factor is None:
            return super().update_step(gradient, variable, learning_rate)
        learning_rate = learning_rate * factor
        if self.weight_decay is not None and super()._use_weight_decay(variable):
            decay = keras.ops.cast(self.weight_decay, variable.dtype) * keras.ops.cast(learning_rate, variable.dtype)
            self.assign(variable, variable - variable * decay)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate_multipliers": self.rate_multipliers}


@keras.saving.register_keras_serializable("refinelab")
class PerLayerRateAdam(PerLayerRates, keras.optimizers.Adam):
    """Adam with per-layer learning-rate multipliers."""


@keras.saving.register_keras_serializable("refinelab")
class PerLayerRateAdamW(PerLayerRates, keras.optimizers.AdamW):
    """AdamW with per-layer learning-rate multipliers."""


@keras.saving.register_keras_serializable("refinelab")
class PerLayerRateSGD(PerLayerRates, keras.optimizers.SGD):
    """SGD with per-layer learning-rate multipliers."""


PER_LAYER_RATE_CLASSES = {
    keras.optimizers.Adam: PerLayerRateAdam,
    keras.optimizers.AdamW: PerLayerRateAdamW,
    keras.optimizers.SGD: PerLayerRateSGD,
}
# What load_model needs to rebuild a saved model's optimizer.
CUSTOM_OBJECTS = {cls.__name__: cls for cls in PER_LAYER_RATE_CLASSES.values()}


def optimizer(kind: type, rate, rate_multipliers: dict[str, float] | None = None, **kwargs) -> keras.optimizers.Optimizer:
    """A ``kind`` optimizer; its per-layer-rate variant when some layer's rate differs."""
    if rate_multipliers:
        return PER_LAYER_RATE_CLASSES[kind](rate, rate_multipliers=rate_multipliers, **kwargs)
    return kind(rate, **kwargs)


OptimizerBuilder = Callable[..., keras.optimizers.Optimizer]
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimizer", OPTIMIZERS)


@OPTIMIZERS.register("adam")
def adam(train: TrainParams, rate, **common) -> keras.optimizers.Optimizer:
    return optimizer(keras.optimizers.Adam, rate, weight_decay=train.weight_decay or None, **common)


@OPTIMIZERS.register("adamw")
def adamw(train: TrainParams, rate, **common) -> keras.optimizers.Optimizer:
    return optimizer(keras.optimizers.AdamW, rate, weight_decay=train.weight_decay, **common)


@OPTIMIZERS.register("sgd")
def sgd(train: TrainParams, rate, **common) -> keras.optimizers.Optimizer:
    return optimizer(keras.optimizers.SGD, rate, momentum=train.momentum, weight_decay=train.weight_decay or None,
                     **common)


def build_optimizer(train: TrainParams, rate, rate_multipliers: dict[str, float] | None = None) -> keras.optimizers.Optimizer:
    """The optimizer ``train`` names; ``rate_multipliers``: variable path -> learning-rate factor."""
    return OPTIMIZERS.get(train.optimizer)(train, rate, clipnorm=train.clipnorm, rate_multipliers=rate_multipliers)


OPTIMIZERS.check_complete()
