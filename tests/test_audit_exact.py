"""minipg.audit.exact: each public check passes minipg's own estimator and fails
deliberately wrong ones at its stated level (99.9%, fixed seeds), naming the
wrong target; bad output from the audited function is a clear EstimatorError.

The wrong estimators are written here in plain NumPy (the outside code a user
would bring), each with one deliberate mistake.
"""

import functools
import inspect

import numpy as np
import pytest

from minipg.audit import exact
from minipg.cli import main
from minipg.kernels import discounted_returns, gae, n_step_returns

# ------------------------------------------------------------ NumPy estimators


def score(features, theta, states, actions):
    """grad log pi(a|s) of the linear softmax, rows (N, d), and pi (S, A)."""
    logits = features @ theta
    pi = np.exp(logits - logits.max(axis=1, keepdims=True))
    pi /= pi.sum(axis=1, keepdims=True)
    return features[states, actions] - np.einsum("sa,sad->sd", pi, features)[states], pi


def pg(states, actions, weights, features, theta, n_episodes, discounts=None, total=False):
    psi, _ = score(features, theta, states, actions)
    w = weights if discounts is None else discounts * weights
    g = (w[:, None] * psi).sum(axis=0)
    return g if total else g / n_episodes


def reinforce(states, actions, rewards, t, terminated, truncated, features, theta, gamma,
              n_episodes, drop_gamma_t=False, total=False, sign=1.0):
    G = discounted_returns(rewards, terminated, truncated, gamma)
    disc = None if drop_gamma_t else gamma ** t
    return sign * pg(states, actions, G, features, theta, n_episodes, disc, total)




def actor_critic(states, actions, q_values, t, features, theta, gamma, n_episodes, drop_I=False,
                 total=False, sign=1.0):
    disc = None if drop_I else gamma ** t
    return sign * pg(states, actions, q_values, features, theta, n_episodes, disc, total)


def gae_pg(states, actions, rewards, values, next_values, t, terminated, truncated, features,
           theta, gamma, lam, n_episodes, drop_gamma_t=False, total=False, sign=1.0):
    adv = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    disc = None if drop_gamma_t else gamma ** t
    return sign * pg(states, actions, adv, features, theta, n_episodes, disc, total)


def off_policy(states, actions, behaviour_probs, q_values, features, theta, ratio="pi/b",
               total=False):
    psi, pi = score(features, theta, states, actions)
    p = pi[states, actions]
    rho = {"pi/b": p / behaviour_probs, "none": 1.0, "b/pi": behaviour_probs / p}[ratio]
    g = (rho * q_values)[:, None] * psi
    return g.sum(axis=0) if total else g.mean(axis=0)


def emphatic(states, actions, behaviour_probs, q_values, t, features, theta, gamma, n_samples,
             trace="follow-on", total=False, sign=1.0):
    """ACE (Imani et al. 2018): rho_H M_H Q_H psi_H at each history's last step H."""
    psi, pi = score(features, theta, states, actions)
    rho = (pi[states, actions] / behaviour_probs).reshape(n_samples, -1)
    M = np.ones(n_samples)
    for k in range(1, rho.shape[1]):
        M = 1.0 + gamma * (rho[:, k - 1] if trace == "follow-on" else 1.0) * M
    if trace == "none":
        M = np.ones(n_samples)
    last = t == t.max()
    g = sign * (rho[:, -1] * M * q_values[last])[:, None] * psi[last]
    return g.sum(axis=0) if total else g.mean(axis=0)


def dpg(states, grad_u_q, gamma, scale=1.0, total=False):
    g = np.einsum("nk,nj->kj", grad_u_q, states)
    return scale * (g if total else g / len(states))


def fvp(states, actions, features, theta, vector, what="score", total=False):
    psi, _ = score(features, theta, states, actions)
    if what == "raw":
        psi = features[states, actions]
    out = psi.T @ (psi @ vector)
    out = out if total else out / len(states)
    return out / 2 if what == "half" else out


def natural_gradient(features, theta, state_weights, gradient, mistake=None):
    S, A, d = features.shape
    _, pi = score(features, theta, np.zeros(1, int), np.zeros(1, int))
    w = state_weights if mistake != "uniform" else (state_weights > 0) / np.sum(state_weights > 0)
    psi = features - np.einsum("sa,sad->sd", pi, features)[:, None, :]
    F = np.einsum("s,sa,sai,saj->ij", w, pi, psi, psi)
    if mistake == "identity":
        return gradient.copy()
    if mistake == "times":
        return F @ gradient
    if mistake == "damped":
        F = F + 0.1 * np.eye(d)
    return np.linalg.solve(F, gradient)


def returns_target(rewards, next_values, terminated, truncated, gamma, mistake=None):
    term, trunc = terminated, truncated
    if mistake == "boot_at_term":
        term, trunc = np.zeros_like(term), term | trunc
    elif mistake == "no_boot_at_trunc":
        term, trunc = term | trunc, np.zeros_like(trunc)
    elif mistake == "undiscounted":
        gamma = 1.0
    return discounted_returns(rewards, term, trunc, gamma, next_values)


def returns_crossing(rewards, gamma, **_):
    """G_t = r_t + gamma G_{t+1} over the whole rollout, done flags unused."""
    G, running = np.empty_like(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        G[t] = running
    return G


def gae_target(rewards, values, next_values, terminated, truncated, gamma, lam, mistake=None):
    if mistake == "lam1":
        lam = 1.0
    if mistake == "no_boot_at_trunc":
        terminated, truncated = terminated | truncated, np.zeros_like(truncated)
    adv = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    return adv + values if mistake == "returns" else adv


def n_step_target(rewards, next_values, terminated, truncated, gamma, n, mistake=None):
    if mistake == "n+1":
        n = n + 1
    if mistake == "boot_at_term":
        terminated, truncated = np.zeros_like(terminated), terminated | truncated
    if mistake == "no_boot_at_trunc":
        terminated, truncated = terminated | truncated, np.zeros_like(truncated)
    return n_step_returns(rewards, next_values, terminated, truncated, gamma, n)


def retrace_target(rewards, q_values, next_values, target_probs, behaviour_probs, terminated,
                   truncated, gamma, lam, mistake=None):
    """Written here by the recursion of verification/FORMULAS.md, one deliberate mistake."""
    rho = target_probs / behaviour_probs
    c = lam * {None: np.minimum(1.0, rho), "untruncated": rho, "no_correction": 1.0 + 0 * rho,
               "tree_backup": target_probs, "boot_at_term": np.minimum(1.0, rho)}[mistake]
    out = np.empty_like(rewards)
    for t in range(len(rewards) - 1, -1, -1):
        if terminated[t] and mistake != "boot_at_term":
            out[t] = rewards[t]
        elif terminated[t] or truncated[t] or t == len(rewards) - 1:
            out[t] = rewards[t] + gamma * next_values[t]
        else:
            out[t] = rewards[t] + gamma * (c[t + 1] * (out[t + 1] - q_values[t + 1])
                                           + next_values[t])
    return out


def with_(fn, **fixed):
    """fn with some keyword arguments fixed; its signature names the rest (so the check
    passes only those)."""
    def wrapped(**kw):
        return fn(**kw, **fixed)
    wrapped.__signature__ = inspect.signature(functools.partial(fn, **fixed))
    wrapped.__name__ = f"{fn.__name__}({', '.join(f'{k}={v}' for k, v in fixed.items())})"
    wrapped.__qualname__ = wrapped.__name__
    return wrapped


# ------------------------------------------------------- correct estimators pass

@pytest.mark.parametrize("name", exact.check_names())
def test_minipg_estimator_passes(name):
    result = exact.check(name, exact.minipg_estimator(name))
    assert result.passed, str(result)
    assert result.statistic <= result.threshold
    assert result.matches == [] and result.diagnosis == ""
    assert f"check {name}" in str(result) and "PASS" in str(result)


CORRECT_NUMPY = {
    "reinforce": reinforce, "reinforce_no_gamma_t": with_(reinforce, drop_gamma_t=True),
    "actor_critic": actor_critic, "gae_policy_gradient": gae_pg, "off_policy": off_policy,
    "off_policy_emphatic": emphatic,
    "dpg": dpg, "fisher_vector_product": fvp, "natural_gradient": natural_gradient,
    "returns": returns_target, "gae": gae_target, "n_step": n_step_target,
    "retrace": retrace_target,
}


@pytest.mark.parametrize("name", exact.check_names())
def test_independent_numpy_estimator_passes(name):
    """An estimator written here from the formulas (not minipg's) passes every check."""
    assert exact.check(name, CORRECT_NUMPY[name]).passed


# -------------------------------------------- wrong estimators fail, with the diagnosis

WRONG = [
    ("reinforce", with_(reinforce, drop_gamma_t=True), "eta_1"),
    ("reinforce", with_(reinforce, total=True), "batch_size x grad J"),
    ("reinforce", with_(reinforce, sign=-1.0), "-grad J"),
    ("reinforce_no_gamma_t", reinforce, "grad J -- gamma^t kept"),
    ("reinforce_no_gamma_t", with_(reinforce, drop_gamma_t=True, total=True), "batch_size x"),
    ("reinforce_no_gamma_t", with_(reinforce, drop_gamma_t=True, sign=-1.0), "-sum_s eta_1"),
    ("actor_critic", with_(actor_critic, drop_I=True), "eta_1"),
    ("actor_critic", with_(actor_critic, total=True), "batch_size x grad J"),
    ("actor_critic", with_(actor_critic, sign=-1.0), "-grad J"),
    ("gae_policy_gradient", with_(gae_pg, drop_gamma_t=True), "eta_1"),
    ("gae_policy_gradient", with_(gae_pg, total=True), "batch_size x grad J"),
    ("gae_policy_gradient", with_(gae_pg, sign=-1.0), "-grad J"),
    ("off_policy", with_(off_policy, ratio="none"), "importance weight pi/b is missing"),
    ("off_policy", with_(off_policy, ratio="b/pi"), "inverted"),
    ("off_policy", with_(off_policy, total=True), "batch_size x g"),
    ("off_policy_emphatic", with_(emphatic, trace="none"), "Q^pi -- Off-PAC's g: the follow"),
    ("off_policy_emphatic", with_(emphatic, trace="no ratio"), "(1 - gamma^(H+1))"),
    ("off_policy_emphatic", with_(emphatic, total=True), "batch_size x grad J_beta"),
    ("off_policy_emphatic", with_(emphatic, sign=-1.0), "-grad J_beta"),
    ("dpg", with_(dpg, scale=10.0), "grad_K J -- the 1/(1 - gamma)"),     # 1/(1-gamma) = 10
    ("dpg", with_(dpg, scale=-1.0), "-(1 - gamma) grad_K J"),
    ("dpg", with_(dpg, total=True), "batch_size x (1 - gamma) grad_K J"),
    ("fisher_vector_product", with_(fvp, what="half"), "F v / 2"),
    ("fisher_vector_product", with_(fvp, what="raw"), "E[phi phi^T] v"),
    ("fisher_vector_product", with_(fvp, total=True), "batch_size x F v"),
    ("natural_gradient", with_(natural_gradient, mistake="identity"), "g -- no precond"),
    ("natural_gradient", with_(natural_gradient, mistake="times"), "F g -- the Fisher applied"),
    ("natural_gradient", with_(natural_gradient, mistake="damped"), "(F + 0.1 I)^-1 g"),
    ("natural_gradient", with_(natural_gradient, mistake="uniform"), "F_uniform^-1 g"),
    ("returns", with_(returns_target, mistake="boot_at_term"), "bootstrapped at terminations"),
    ("returns", with_(returns_target, mistake="no_boot_at_trunc"), "no bootstrap at trunc"),
    ("returns", returns_crossing, "episode ends ignored"),
    ("returns", with_(returns_target, mistake="undiscounted"), "undiscounted returns"),
    ("gae", with_(gae_target, mistake="lam1"), "GAE with lambda = 1"),
    ("gae", with_(gae_target, mistake="no_boot_at_trunc"), "no bootstrap at truncations"),
    ("gae", with_(gae_target, mistake="returns"), "lambda-returns"),
    ("n_step", with_(n_step_target, mistake="n+1"), "4-step returns"),
    ("n_step", with_(n_step_target, mistake="boot_at_term"), "bootstrapped at terminations"),
    ("n_step", with_(n_step_target, mistake="no_boot_at_trunc"), "no bootstrap at trunc"),
    ("retrace", with_(retrace_target, mistake="untruncated"), "traces importance"),
    ("retrace", with_(retrace_target, mistake="no_correction"), "traces none"),
    ("retrace", with_(retrace_target, mistake="tree_backup"), "traces tree_backup"),
    ("retrace", with_(retrace_target, mistake="boot_at_term"), "bootstrapped at terminations"),
]


@pytest.mark.parametrize("name, fn, named", WRONG, ids=[f"{n}-{f.__name__}" for n, f, _ in WRONG])
def test_wrong_estimator_fails_with_its_diagnosis(name, fn, named):
    result = exact.check(name, fn)
    assert not result.passed, str(result)
    assert result.statistic > result.threshold
    assert named in result.diagnosis, str(result)
    assert "FAIL" in str(result) and named in str(result)


def test_every_public_check_has_at_least_three_wrong_estimators_tested():
    counts = {name: sum(n == name for n, _, _ in WRONG) for name in exact.check_names()}
    assert min(counts.values()) >= 3, counts


def test_wrong_targets_are_far_apart_from_the_target_in_the_statistical_checks():
    """A correct estimator's T^2 against each known wrong target is far above the threshold:
    the diagnosis cannot name a wrong target for a correct estimator by chance."""
    result = exact.check("reinforce", reinforce)
    assert result.passed
    # the T^2 of the correct estimator's samples against the eta_1 quantity (re-run the test
    # on the same seed with that quantity as the target by declaring it the target)
    wrong = exact.check("reinforce_no_gamma_t", reinforce)
    assert not wrong.passed and wrong.statistic > 100 * wrong.threshold


def test_same_seed_same_decision_and_another_seed_other_batches():
    a = exact.check("off_policy", off_policy, seed=3)
    b = exact.check("off_policy", off_policy, seed=3)
    c = exact.check("off_policy", off_policy, seed=4)
    assert a.statistic == b.statistic and np.array_equal(a.mean, b.mean)
    assert a.statistic != c.statistic


def test_zero_estimator_fails_cleanly():
    result = exact.check("reinforce", lambda theta, **_: np.zeros_like(theta))
    assert not result.passed and result.statistic == float("inf")
    assert "constant" in result.test


def test_sizes_and_confidence_are_settable_and_checked():
    r = exact.check("dpg", dpg, n_batches=300, batch_size=4, confidence=0.99)
    assert r.n == 300 and r.confidence == 0.99 and "99%" in r.test
    with pytest.raises(ValueError, match="no size setting n_episodes"):
        exact.check("dpg", dpg, n_episodes=3)
    with pytest.raises(ValueError, match="positive integer"):
        exact.check("dpg", dpg, n_batches=0)
    with pytest.raises(ValueError, match="confidence"):
        exact.check("dpg", dpg, confidence=1.5)


def test_describe_lists_arguments_returns_and_wrong_targets():
    for name in exact.check_names():
        text = exact.describe(name)
        assert text.startswith(name) and "keyword arguments:" in text and "returns:" in text
        for w in exact.CHECKS[name].wrong_targets:
            assert w.name in text


def test_unknown_check_names_the_accepted_ones():
    with pytest.raises(exact.UnknownCheckError, match="accepted: reinforce, "):
        exact.check("reinforse", reinforce)


# -------------------------------------------------- bad output: a clear EstimatorError

def wrong_shape(theta, **_):
    return np.zeros(len(theta) + 1)


def returns_nan(theta, **_):
    out = np.ones_like(theta)
    out[2] = np.nan
    return out


def returns_list(theta, **_):
    return [0.0] * len(theta)


def raises_inside(theta, states, **_):
    return theta[states.max() + 100]             # IndexError inside the user's code


def returns_strings(theta, **_):
    return np.array(["a"] * len(theta))


def needs_more(theta, critic_network):
    return theta


@pytest.mark.parametrize("fn, words", [
    (wrong_shape, ["wrong_shape", "returned shape (5,)", "shape (4,)", "MEAN over the batch"]),
    (returns_nan, ["returns_nan", "non-finite", "index (2,)", "all finite"]),
    (returns_list, ["returns_list", "returned a list", "NumPy array"]),
    (raises_inside, ["raises_inside", "raised IndexError", "test_audit_exact.py",
                     "should return the gradient estimate"]),
    (returns_strings, ["returns_strings", "dtype <U1", "real numbers"]),
    (needs_more, ["needs_more", "requires critic_network", "supplies", "states"]),
    (42, ["must be a function"]),
])
def test_bad_output_is_a_clear_error_naming_the_function(fn, words):
    with pytest.raises(exact.EstimatorError) as info:
        exact.check("reinforce", fn, n_batches=20)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_a_torch_tensor_is_named_with_the_conversion():
    torch = pytest.importorskip("torch")

    def returns_tensor(theta, **_):
        return torch.zeros(len(theta))
    with pytest.raises(exact.EstimatorError, match=r"\.detach\(\)\.cpu\(\)\.numpy\(\)"):
        exact.check("reinforce", returns_tensor, n_batches=20)


def test_the_function_may_not_corrupt_the_bed():
    """Arguments are copies: a function that writes into them changes nothing else."""
    def vandal(states, actions, rewards, t, terminated, truncated, features, theta, gamma,
               n_episodes):
        g = reinforce(states=states, actions=actions, rewards=rewards, t=t,
                      terminated=terminated, truncated=truncated, features=features,
                      theta=theta, gamma=gamma, n_episodes=n_episodes)
        features[:] = 0.0
        theta[:] = 0.0
        return g
    assert exact.check("reinforce", vandal).passed


# ------------------------------------------------------------------ the command line

MODULE = '''
import numpy as np

def good(states, grad_u_q, **_):
    return np.einsum("nk,nj->kj", grad_u_q, states) / len(states)

def summed(states, grad_u_q, **_):
    return np.einsum("nk,nj->kj", grad_u_q, states)

def broken(states, **_):
    raise RuntimeError("my bug")
'''


def test_cli_audits_an_importable_function(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_grads.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["audit", "--estimator", "my_grads:good", "--check", "dpg"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["audit", "--estimator", "my_grads:summed", "--check", "dpg"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "batch_size x (1 - gamma) grad_K J" in out
    assert main(["audit", "--estimator", "my_grads:broken", "--check", "dpg"]) == 2
    err = capsys.readouterr().err
    assert "my_grads:broken raised RuntimeError: my bug" in err and "Traceback" not in err
    for argv, words in [
        (["--estimator", "my_grads:nothing", "--check", "dpg"], "no attribute 'nothing'"),
        (["--estimator", "no_such_module:f", "--check", "dpg"], "cannot import module"),
        (["--estimator", "my_grads.good", "--check", "dpg"], "MODULE:FUNCTION"),
        (["--estimator", "my_grads:good"], "needs --check NAME"),
        (["--estimator", "my_grads:good", "--check", "nope"], "accepted: reinforce"),
        (["reinforce", "--check", "dpg"], "take no algorithm names"),
    ]:
        assert main(["audit", *argv]) == 2, argv
        assert words in capsys.readouterr().err, argv
    (tmp_path / "my_pg.py").write_text("from minipg.audit.exact import minipg_reinforce\n")
    assert main(["audit", "--estimator", "my_pg:minipg_reinforce", "--check", "reinforce",
                 "--policy", "tabular", "--seed", "1"]) == 0
    assert "tabular softmax (18 logits)" in capsys.readouterr().out
    assert main(["audit", "--estimator", "my_grads:good", "--check", "dpg", "--policy",
                 "tabular"]) == 2
    assert "takes policy 'linear'" in capsys.readouterr().err
    assert main(["audit", "--check", "retrace"]) == 0
    assert "target_probs" in capsys.readouterr().out


# --------------------------------------------------------------- the README example

def test_readme_example_runs_passes_and_fails_without_gamma_t(capsys):
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### Audit your own gradient"):]
    code = section[section.index("```python") + 9:section.index("```", section.index(
        "```python") + 9)]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert "PASS" in capsys.readouterr().out
    broken = code.replace("(gamma ** t * G)", "G").replace("print(", "result = (")
    assert broken != code
    exec(compile(broken, "README.md", "exec"), namespace)
    assert not namespace["result"].passed and "eta_1" in namespace["result"].diagnosis


# ------------------------------------------------------------ the tabular policy

TABULAR = [n for n in exact.check_names() if "tabular" in exact.CHECKS[n].policies]


@pytest.mark.parametrize("name", TABULAR)
def test_tabular_policy_passes_minipg_and_numpy_estimators(name):
    """policy="tabular": the same pi with one-hot features (theta = its logits); the logits
    of the terminal state never move and are not tested."""
    for fn in (exact.minipg_estimator(name), CORRECT_NUMPY[name]):
        result = exact.check(name, fn, policy="tabular")
        assert result.passed, str(result)
        assert "tabular softmax (" in result.test


def test_tabular_policy_fails_a_dropped_gamma_t_naming_it():
    result = exact.check("reinforce", with_(reinforce, drop_gamma_t=True), policy="tabular")
    assert not result.passed and "eta_1" in result.diagnosis
    assert "3 components constant and exact" in result.test


def test_a_check_without_a_tabular_variant_says_so():
    assert TABULAR and "dpg" not in TABULAR and "natural_gradient" not in TABULAR
    with pytest.raises(ValueError, match="takes policy 'linear'"):
        exact.check("dpg", dpg, policy="tabular")


@pytest.mark.parametrize("name", ["returns", "gae", "n_step", "retrace"])
def test_target_checks_keep_every_wrong_variant_far_from_the_tolerance(name):
    """The nearest known wrong variant is > 1000 x the tolerance (1e-2 relative) away."""
    for seed in range(4):
        result = exact.check(name, exact.minipg_estimator(name), seed=seed, n_episodes=500)
        factor = float(result.details[0].split(", ")[-1].split(" x ")[0])
        assert factor > 1000, result.details[0]


@pytest.mark.parametrize("name, size", [("fisher_vector_product", {"n_batches": 4}),
                                        ("reinforce", {"n_batches": 3}),
                                        ("gae", {"n_episodes": 5})])
def test_a_sample_too_small_for_the_test_is_a_usage_error_not_a_failing_estimator(name, size):
    # with n <= p + 1 Hotelling's T^2 cannot be formed; minipg's own correct estimator must
    # not be reported as failing (or biased) then: the size is refused, naming its minimum
    (key, value), = size.items()
    with pytest.raises(ValueError, match=rf"{key}={value} is too small.*accepted: {key} >= \d+"):
        exact.check(name, exact.minipg_estimator(name), **size)
