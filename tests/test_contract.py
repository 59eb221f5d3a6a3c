"""The parameter contract and the optimizer objects: declared once, used everywhere.

The oracle `fastbp.baseline` keeps its own option names on purpose (it must
not share code with what it checks); these tests hold the two, the command
line and the kernels' codes to the one list in `fastbp._contract`.
"""

import inspect

import numpy as np
import pytest

from fastbp import Network, Trainer, _contract, _kernels, baseline
from fastbp.__main__ import build_parser
from fastbp._optimizers import OPTIMIZER_CLASSES, make_optimizer
from fastbp.schedules import SCHEDULES


def test_the_oracle_names_the_same_options():
    assert baseline.ACTIVATIONS == _contract.HIDDEN_ACTIVATIONS
    assert baseline.OUTPUTS == _contract.OUTPUT_ACTIVATIONS
    assert baseline.LOSSES == _contract.LOSSES
    assert baseline.OPTIMIZERS == _contract.OPTIMIZERS
    assert tuple(OPTIMIZER_CLASSES) == _contract.OPTIMIZERS


def test_every_activation_and_loss_has_a_distinct_kernel_code():
    names = set(_contract.HIDDEN_ACTIVATIONS) | set(_contract.OUTPUT_ACTIVATIONS)
    assert set(_contract.ACTIVATION_CODES) == names
    assert len(set(_contract.ACTIVATION_CODES.values())) == len(names)
    assert set(_contract.LOSS_CODES) == set(_contract.LOSSES)
    assert len(set(_contract.LOSS_CODES.values())) == len(_contract.LOSSES)


def test_the_command_line_offers_the_contract_choices():
    choices = {action.dest: tuple(action.choices) for action in build_parser()._actions
               if action.choices is not None}
    assert choices["activation"] == _contract.HIDDEN_ACTIVATIONS
    assert choices["output"] == _contract.OUTPUT_ACTIVATIONS
    assert choices["loss"] == _contract.LOSSES
    assert choices["optimizer"] == _contract.OPTIMIZERS
    assert choices["schedule"] == tuple(SCHEDULES)
    assert choices["dtype"] == _contract.DTYPES


def test_every_trainer_argument_is_constrained_configured_and_defaulted_once():
    parameters = inspect.signature(Trainer.__init__).parameters
    # network, seed and schedule have checks of their own (type, seed, Schedule)
    constrained = set(parameters) - {"self", "network", "seed", "schedule"}
    assert set(Trainer._parameter_constraints) == constrained
    trainer = Trainer(Network([3, 2], seed=0), seed=5)
    config = trainer.get_config()
    assert list(config) == [name for name in parameters
                            if name not in ("self", "network", "schedule")]
    for name, value in config.items():
        default = parameters[name].default
        assert value == (5 if name == "seed" else default), name
    # a trainer made from its config has the same settings
    assert Trainer(Network([3, 2], seed=0), **config).get_config() == config


def test_repr_shows_keyword_arguments_only_when_they_differ_from_the_signature():
    net = Network([3, 2], seed=0)
    plain = repr(Trainer(net, seed=1))
    for name in ("l1", "nesterov", "weight_decay", "rho", "beta1", "beta2", "epsilon",
                 "on_divergence", "schedule"):
        assert f"{name}=" not in plain
    changed = repr(Trainer(net, seed=1, rho=0.5, on_divergence="warn", schedule="step"))
    assert "rho=0.5" in changed and "on_divergence='warn'" in changed
    assert "schedule=StepDecay(" in changed and "beta1=" not in changed


@pytest.mark.parametrize("value", [None, 0.0, 0.3])
def test_weight_decay_takes_none_or_a_non_negative_number(value):
    assert Trainer(Network([3, 2]), weight_decay=value).weight_decay == value


@pytest.mark.parametrize("value, error", [(-0.1, ValueError), ("0.1", TypeError),
                                          (float("nan"), ValueError)])
def test_weight_decay_refuses_anything_else_naming_it(value, error):
    with pytest.raises(error, match="weight_decay"):
        Trainer(Network([3, 2]), weight_decay=value)


def test_cross_parameter_rules_are_checked_with_their_message():
    net = Network([3, 2])
    with pytest.raises(ValueError, match="momentum applies to optimizer='sgd' only"):
        Trainer(net, optimizer="rmsprop", momentum=0.5)
    with pytest.raises(ValueError, match="nesterov=True needs"):
        Trainer(net, nesterov=True)
    trainer = Trainer(net, momentum=0.5)
    trainer.optimizer = "adam"          # attributes are checked again at each call
    with pytest.raises(ValueError, match="momentum applies"):
        trainer.fit(np.zeros((2, 3)), np.zeros((2, 2)), epochs=1)


@pytest.mark.parametrize("monitor, best, value, improves", [
    ("loss", None, 5.0, True), ("loss", 1.0, 0.5, True), ("loss", 1.0, 0.95, False),
    ("val_loss", 1.0, 1.5, False), ("accuracy", 0.5, 0.7, True),
    ("val_accuracy", 0.5, 0.55, False), ("val_accuracy", 0.5, 0.4, False),
])
def test_one_improvement_rule_for_losses_and_accuracies(monitor, best, value, improves):
    assert _contract.improved(monitor, best, value, min_delta=0.1) is improves


# ------------------------------------------------------------------ optimizers

RULES = {
    "sgd": {}, "momentum": {"momentum": 0.9}, "nesterov": {"momentum": 0.9, "nesterov": True},
    "l1": {"l1": 1e-3}, "decay": {"weight_decay": 1e-3},
    "rmsprop": {"optimizer": "rmsprop"}, "adam": {"optimizer": "adam"},
    "adamw": {"optimizer": "adamw"},
}
# plain SGD and heavy-ball momentum update through the GEMM; every other rule
# needs the gradient in a buffer first
NEEDS_GRADIENTS = {"sgd": False, "momentum": False, "nesterov": True, "l1": True,
                   "decay": True, "rmsprop": True, "adam": True, "adamw": True}
STATE = {"sgd": set(), "momentum": {"velocity"}, "nesterov": {"velocity"}, "l1": set(),
         "decay": set(), "rmsprop": {"square_average"},
         "adam": {"first_moment", "second_moment"},
         "adamw": {"first_moment", "second_moment"}}


@pytest.mark.parametrize("name", list(RULES))
def test_each_rule_owns_its_named_state_and_says_whether_it_needs_gradients(name):
    net = Network([4, 3, 2], seed=0)
    trainer = Trainer(net, learning_rate=0.01, seed=0, **RULES[name])
    trainer.fit(np.random.default_rng(0).random((20, 4)), np.arange(20) % 2, epochs=2)
    optimizer = trainer._optimizer
    allocated = {key for key, array in optimizer.state.items() if array.size}
    assert allocated == STATE[name]
    for key in allocated:
        assert optimizer.state[key].shape == net._params.shape
        assert np.any(optimizer.state[key] != 0)
    assert optimizer.updates == 2 * 2      # 20 samples in batches of 10, two epochs
    rule = optimizer.rule(0.01, trainer.l2, trainer.l1)
    assert _kernels.needs_gradients(rule) is NEEDS_GRADIENTS[name]
    assert (trainer._gradients.size > 0) is NEEDS_GRADIENTS[name]


def test_switching_rule_starts_its_state_afresh_and_anything_else_keeps_it():
    params = np.ones(5)
    adam = make_optimizer(None, "adam", params.dtype, {"beta1": 0.9, "beta2": 0.999,
                                                       "epsilon": 1e-8, "weight_decay": None})
    adam.allocate(params)
    adam.state["first_moment"][:] = 3
    adam.updates = 7
    same = make_optimizer(adam, "adam", params.dtype, {"beta1": 0.5, "beta2": 0.9,
                                                       "epsilon": 1e-6, "weight_decay": 0.1})
    assert same is adam and same.updates == 7 and same.beta1 == 0.5 and same.decay == 0.1
    assert np.all(same.state["first_moment"] == 3)
    other = make_optimizer(adam, "adamw", params.dtype, {"beta1": 0.9, "beta2": 0.999,
                                                         "epsilon": 1e-8,
                                                         "weight_decay": None})
    assert other is not adam and other.updates == 0 and other.decay == 0.01
    assert all(array.size == 0 for array in other.state.values())


def test_a_checkpoint_keeps_the_state_slots_in_the_rule_order(tmp_path):
    net = Network([4, 3, 2], seed=0)
    trainer = Trainer(net, optimizer="rmsprop", learning_rate=0.01, seed=0)
    trainer.fit(np.random.default_rng(0).random((20, 4)), np.arange(20) % 2, epochs=1)
    trainer.save_checkpoint(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as archive:
        assert np.array_equal(archive["state1"], trainer._optimizer.state["square_average"])
        assert archive["state2"].size == 0
    restored = Trainer.load_checkpoint(tmp_path / "c.npz")
    assert np.array_equal(restored._optimizer.state["square_average"],
                          trainer._optimizer.state["square_average"])
    assert restored._optimizer.updates == trainer._optimizer.updates


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_penalty_of_j_is_the_kernels_one_sum_in_double(dtype):
    net = Network([6, 5, 3], dtype=dtype, seed=0)
    expected = sum(0.5 * 0.01 * np.sum(w.astype(np.float64) ** 2)
                   + 0.002 * np.sum(np.abs(w.astype(np.float64))) for w in net.weights)
    got = _kernels.penalty(net._params, net._sizes, 0.01, 0.002)
    assert got == pytest.approx(expected, rel=1e-13)
    assert _kernels.penalty(net._params, net._sizes, 0.0, 0.0) == 0.0
    trainer = Trainer(net, l2=0.01, l1=0.002)
    X, y = np.zeros((4, 6)), np.zeros(4, dtype=int)
    # evaluate's J and the training loss add the same penalty
    data_only = Trainer(net).evaluate(X, y)["loss"]
    assert trainer.evaluate(X, y)["loss"] == data_only + got


@pytest.mark.parametrize("name, value", [("batch_size", True), ("batch_size", 1.0),
                                         ("shuffle", 1), ("nesterov", 0),
                                         ("learning_rate", float("nan"))])
def test_a_value_equal_to_a_valid_one_but_of_another_type_is_still_refused(name, value):
    # the trainer remembers the settings it last found valid: a reassigned
    # attribute that compares equal (True == 1) must not pass for them
    trainer = Trainer(Network([3, 2], seed=0), batch_size=1, shuffle=True, seed=0)
    X, y = np.zeros((4, 3)), np.array([0, 1, 0, 1])
    trainer.fit(X, y, epochs=1)
    setattr(trainer, name, value)
    with pytest.raises((TypeError, ValueError), match=name):
        trainer.fit(X, y, epochs=1)
    with pytest.raises((TypeError, ValueError), match=name):
        trainer.step(X, y)
