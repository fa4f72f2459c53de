"""minipg.audit: the registry of checks, their seeds, and the exit status of ``minipg audit``.

* every check is registered under (algorithm, estimator, level), each level is
  one of the three of minipg.audit.levels, and a check module that cannot be
  imported is an error (never a silently missing family);
* each check's generator depends on its own name only: adding a check
  reseeds no other, and the seed is the same in every process (no salted
  ``hash()``);
* ``minipg audit`` exits 0 when every selected check passes, non-zero when one
  fails or crashes, and 2 with a clear message for an unknown algorithm or a
  missing check module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minipg import audit
from minipg.audit import levels
from minipg.cli import main
from minipg.registry import Registry, RegistryError


@pytest.fixture
def empty_registry(monkeypatch):
    """audit.CHECKS replaced by a registry with no modules; checks registered in a test
    land there (and vanish with the test)."""
    registry = Registry("audit check", "minipg.audit", ())
    monkeypatch.setattr(audit, "CHECKS", registry)
    return registry


def passing(full, rng):
    return levels.Result(0.0, 1.0, True, "passes")


def failing(full, rng):
    return levels.Result(2.0, 1.0, False, "fails on purpose")


def crashing(full, rng):
    raise ZeroDivisionError("crashes on purpose")


# =========================================================================== registry

def test_every_check_is_keyed_by_algorithm_estimator_and_level():
    names = audit.CHECKS.names()
    assert len(names) == len(set(names)) >= 38
    for algorithm, estimator, level in names:
        assert level in levels.LEVELS
        entry = audit.CHECKS.entry((algorithm, estimator, level))
        assert entry.info == {"algorithm": algorithm, "estimator": estimator, "level": level}
    assert audit.algorithms()[:4] == ["reinforce", "actor_critic", "off_policy_ac", "dpg"]
    for algorithm in audit.algorithms():            # every algorithm has all three levels
        assert {e.info["level"] for e in audit.checks([algorithm])} == set(levels.LEVELS)


def test_a_level_outside_the_three_is_refused(empty_registry):
    with pytest.raises(ValueError, match="level must be one of"):
        audit.audit_check("x", "y", "gradchek")


def test_a_check_registered_twice_is_an_error(empty_registry):
    audit.audit_check("x", "y", "formula")(passing)
    with pytest.raises(RegistryError, match="twice"):
        audit.audit_check("x", "y", "formula")(failing)


def test_a_missing_check_module_is_an_error_not_a_missing_family(monkeypatch, capsys):
    typo = Registry("audit check", "minipg.audit", ("classical", "onpolicyy"))
    monkeypatch.setattr(audit, "CHECKS", typo)
    with pytest.raises(RegistryError, match="onpolicyy"):
        audit.run()
    assert main(["audit"]) == 2
    err = capsys.readouterr().err
    assert "onpolicyy" in err and "does not exist" in err


# ============================================================================== seeds

def test_adding_a_check_reseeds_no_other_check(empty_registry, monkeypatch):
    """Each check records its first draw; a check added in front of the others (same
    algorithm, so it would shift every later position) changes none of their draws."""
    seen = {}

    def recorder(name):
        def check(full, rng):
            seen[name] = rng.random(3)
            return levels.Result(0.0, 1.0, True)
        return check

    for estimator in ("b", "c"):
        audit.audit_check("algo", estimator, "exact")(recorder(estimator))
    audit.run()
    before = dict(seen)
    # a new check registered before b and c: a fresh registry with it first
    monkeypatch.setattr(audit, "CHECKS", Registry("audit check", "minipg.audit", ()))
    for estimator in ("a", "b", "c"):
        audit.audit_check("algo", estimator, "exact")(recorder(estimator))
    seen.clear()
    audit.run()
    for name in ("b", "c"):
        np.testing.assert_array_equal(seen[name], before[name])
    assert not np.array_equal(seen["a"], seen["b"])


def test_the_seed_comes_from_the_name_only():
    rng = audit.check_rng(0, "ppo", "clip_objective (J^CLIP)", "exact")
    same = audit.check_rng(0, "ppo", "clip_objective (J^CLIP)", "exact")
    np.testing.assert_array_equal(rng.random(4), same.random(4))
    others = [audit.check_rng(0, "ppo", "clip_objective (J^CLIP)", "formula"),
              audit.check_rng(0, "a2c", "clip_objective (J^CLIP)", "exact"),
              audit.check_rng(1, "ppo", "clip_objective (J^CLIP)", "exact")]
    first = audit.check_rng(0, "ppo", "clip_objective (J^CLIP)", "exact").random(4)
    for other in others:
        assert not np.array_equal(other.random(4), first)


def test_the_seed_is_the_same_in_every_process():
    """No salted hash(): two interpreters with different PYTHONHASHSEED draw the same."""
    code = ("from minipg.audit import check_rng; "
            "print(check_rng(0, 'dpg', 'dpg_actor_objective', 'exact').integers(1 << 62))")
    values = set()
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"PYTHONHASHSEED": hash_seed, "PATH": ""}, check=True,
                             cwd=Path(__file__).resolve().parent.parent)
        values.add(out.stdout.strip())
    assert len(values) == 1
    assert values == {str(audit.check_rng(0, "dpg", "dpg_actor_objective",
                                          "exact").integers(1 << 62))}


def test_each_real_check_gets_the_generator_of_its_name(monkeypatch):
    """audit.run hands check (a, e, l) the stream check_rng(seed, a, e, l)."""
    got = {}
    registry = Registry("audit check", "minipg.audit", ())
    for entry in audit.checks(["reinforce"]):
        def spy(full, rng, name=entry.name):
            got[name] = rng.random()
            return levels.Result(0.0, 1.0, True)
        registry.register(entry.name, **entry.info)(spy)
    monkeypatch.setattr(audit, "CHECKS", registry)
    audit.run(seed=7)
    assert len(got) == 5
    for name, value in got.items():
        assert value == audit.check_rng(7, *name).random()


# ======================================================================= exit status

def test_audit_exits_zero_when_every_selected_check_passes(capsys):
    assert main(["audit", "dpg"]) == 0
    out = capsys.readouterr().out
    assert "3/3 checks passed" in out and "FAIL" not in out


def test_audit_exits_non_zero_when_a_check_fails(empty_registry, capsys):
    audit.audit_check("toy", "right", "formula")(passing)
    audit.audit_check("toy", "wrong", "formula")(failing)
    assert main(["audit"]) == 1
    out = capsys.readouterr().out
    assert "1/2 checks passed" in out and "fails on purpose" in out
    assert main(["audit", "toy"]) == 1


def test_audit_exits_non_zero_when_a_real_check_is_made_to_fail(monkeypatch, capsys):
    """The real dpg formula row, its closed form deliberately wrong (an extra factor 2)."""
    from minipg.audit import classical
    real = classical.formula_from_terms
    monkeypatch.setattr(classical, "formula_from_terms",
                        lambda autodiff, terms, what: real(autodiff, 2 * terms, what))
    assert main(["audit", "dpg"]) == 1
    assert "2/3 checks passed" in capsys.readouterr().out


def test_a_crashing_check_is_a_failing_row(empty_registry, capsys):
    audit.audit_check("toy", "crash", "exact")(crashing)
    assert main(["audit"]) == 1
    assert "error: ZeroDivisionError: crashes on purpose" in capsys.readouterr().out


def test_audit_with_no_checks_is_not_a_pass(empty_registry):
    assert main(["audit"]) == 1


def test_an_unknown_algorithm_is_a_clear_error(capsys):
    assert main(["audit", "reinforce", "pp0"]) == 2
    err = capsys.readouterr().err
    assert "no audit checks for pp0" in err and "accepted:" in err and "ppo" in err
    with pytest.raises(audit.UnknownAlgorithmError, match="pp0"):
        audit.run(["pp0"])


# ===================================================== the levels reject wrong gradients

def test_gradcheck_module_rejects_a_gradient_that_misses_a_term():
    """Level 1 on a Module: sum(W * W) passes; sum(W * W.data) -- the second factor held
    constant, so autodiff gives W where the value's derivative is 2W -- fails."""
    from minipg.audit.offpolicy import make_agent
    from minipg.autodiff import ops
    agent = make_agent("ddpg")
    weight = agent.actor.net.layer0.weight
    right = levels.gradcheck_module(lambda: ops.sum(weight * weight), agent.actor, "right")
    wrong = levels.gradcheck_module(lambda: ops.sum(weight * weight.data), agent.actor, "wrong")
    assert right.passed and right.statistic < 1e-2
    assert not wrong.passed and wrong.statistic > 1e3


def test_onpolicy_exact_rows_accept_the_estimators_and_reject_deliberate_mistakes():
    """The Monte-Carlo level-3 rows of A2C and PPO: accepted for grad J; bootstrapping past
    terminations (A2C) and a sign flip (PPO) rejected; the sampled mean agrees with the
    exact expectation computed by enumeration."""
    from minipg.audit import onpolicy
    from minipg.audit.stats import hotelling_test
    mdp, policy, theta = onpolicy.exact_bed()
    states, actions, next_states, Z = onpolicy.sample_transitions(
        mdp, policy, theta, 20_000, np.random.default_rng(5))
    grad_J = mdp.policy_gradient(policy, theta)
    a2c = Z * onpolicy.a2c_estimates(mdp, policy, theta, states, actions, next_states)
    assert not hotelling_test(a2c, grad_J).rejected
    assert not hotelling_test(a2c, onpolicy.expected_a2c_gradient(mdp, policy, theta)).rejected
    past_end = Z * onpolicy.a2c_estimates(mdp, policy, theta, states, actions, next_states,
                                          flag_terminations=False)
    assert hotelling_test(past_end, grad_J).rejected
    ppo = Z * onpolicy.ppo_estimates_at_ratio_one(mdp, policy, theta, states, actions)
    assert not hotelling_test(ppo, grad_J).rejected
    assert hotelling_test(-ppo, grad_J).rejected


def test_split_gradient_needs_check_linear_false_for_the_clipped_objective():
    from minipg.audit import onpolicy
    from minipg.audit.beds import split_gradient
    from minipg.estimators.ppo import clip_objective
    mdp, policy, theta = onpolicy.exact_bed()
    states, actions, _, _ = onpolicy.sample_transitions(mdp, policy, theta, 50,
                                                        np.random.default_rng(6))
    pi = policy.probs(theta)
    advantages = mdp.advantage(pi)[states, actions]

    def objective(log_prob):
        return clip_objective(log_prob, np.log(pi[states, actions]), advantages, 0.2)
    with pytest.raises(RuntimeError, match="not linear"):
        split_gradient(objective, policy, theta, states, actions, np.arange(50), 50, 50)
    rows = split_gradient(objective, policy, theta, states, actions, np.arange(50), 50, 50,
                          check_linear=False)
    score = policy.grad_log_prob(theta)[states, actions]
    np.testing.assert_allclose(rows, advantages[:, None] * score, rtol=1e-10, atol=1e-14)


def test_the_order_of_the_rows_is_the_listed_modules_whatever_was_imported_first():
    """A test that imports minipg.audit.offpolicy first registers its checks first; the
    table still lists the families in CHECK_MODULES order."""
    code = ("import minipg.audit.offpolicy; from minipg import audit; "
            "print(' '.join(audit.algorithms()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == audit.algorithms()
    assert audit.algorithms()[:4] == ["reinforce", "actor_critic", "off_policy_ac", "dpg"]
