"""`minipg reference --profile` and `--check --arrays/--present-only`.

The conventions that decide the numbers are stated in every manifest, and a
profile (minipg, sb3, cleanrl) changes exactly the arrays those conventions
decide.  Each profile's numbers are recomputed here in plain NumPy from the
written inputs and weights, following the conventions as stable-baselines3
and CleanRL compute them (see verification/reference/SCHEMA.md), so a wrong
convention in the writer fails here.  The subset check compares only what is
asked for and lists every array it did not compare.

Tolerances: NumPy recomputations of float64 quantities from the same inputs
agree to rounding (a few hundred operations on O(1) values): rtol 1e-12.
"""

import json
import shutil

import numpy as np
import pytest

from minipg import reference
from minipg.cli import main
from minipg.reference.profiles import CONVENTIONS, PROFILES

CLOSE = dict(rtol=1e-12, atol=1e-14)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiles")
    for profile in PROFILES:
        reference.write(root / profile, profile=profile)
    return root


def _case(refs, profile, name):
    d = refs / profile / name
    m = json.loads((d / "manifest.json").read_text())
    return m, {a: np.load(d / f"{a}.npy", allow_pickle=False) for a in m["arrays"]}


def _forward(m, arrays, net, x):
    for layer in m["networks"][net]["layers"]:
        x = x @ arrays[layer["W"]] + arrays[layer["b"]]
        x = np.tanh(x) if layer["activation"] == "tanh" else x
    return x


# ------------------------------------------------------------------ manifests

def test_every_manifest_states_its_profile_and_conventions(refs):
    for profile in PROFILES:
        for name in reference.case_names():
            text = (refs / profile / name / "manifest.json").read_text()
            assert "{{" not in text, (profile, name)            # every placeholder filled
            m = json.loads(text)
            assert m["profile"] == profile
            conventions = m["conventions"]
            assert "float32_data" in conventions
            for key, stated in conventions.items():
                assert stated["value"] == CONVENTIONS[key].value(profile), (name, key)
                assert stated["statement"] == CONVENTIONS[key].statement(stated["value"])
    m, _ = _case(refs, "sb3", "ppo_objective")
    assert set(m["conventions"]) >= {"advantage_normalization", "ppo_value_clip",
                                     "ppo_value_loss_scale"}
    assert m["conventions"]["advantage_normalization"]["value"]["ddof"] == 1
    assert "ddof = 1" in m["formula"][0]
    m, _ = _case(refs, "cleanrl", "sac_q_twin")
    assert set(m["conventions"]) >= {"sac_action_space", "tanh_log_det", "sac_log_std",
                                     "sac_q_loss_scale"}
    # CleanRL has no A2C: minipg's value is used, and the notes say so
    m, _ = _case(refs, "cleanrl", "a2c")
    assert any("a2c_value_loss_scale" in note for note in m["notes"])
    assert _case(refs, "minipg", "a2c")[0]["notes"] == []


def test_profiles_change_exactly_the_arrays_their_conventions_decide(refs):
    untouched = ["reinforce", "gae", "ppo_clip", "a2c", "ddpg_critic", "td3_critic", "dpg"]
    for name in untouched:
        _, base = _case(refs, "minipg", name)
        for profile in ("sb3", "cleanrl"):
            _, other = _case(refs, profile, name)
            assert all(np.array_equal(base[a], other[a]) for a in base), (profile, name)
    changed = {("sb3", "ppo_objective"): "advantages_normalized",
               ("sb3", "ppo_value_clip"): "value_loss_clipped",
               ("sb3", "sac_temperature"): "J_alpha", ("sb3", "sac_policy"): "log_prob",
               ("cleanrl", "ppo_value_clip"): "value_loss", ("cleanrl", "sac_q"): "J_Q1",
               ("cleanrl", "sac_policy"): "log_prob"}
    for (profile, name), array in changed.items():
        _, base = _case(refs, "minipg", name)
        _, other = _case(refs, profile, name)
        assert not np.allclose(base[array], other[array]), (profile, name, array)
        # the inputs and weights are the same: only the conventions differ
        m, _ = _case(refs, profile, name)
        for a, entry in m["arrays"].items():
            if entry["role"] in ("input", "parameter"):
                assert np.array_equal(base[a], other[a]), (profile, name, a)


# ------------------------------------------------------------------ the numbers, in NumPy

def test_advantage_normalisation_per_profile(refs):
    for profile, ddof in (("minipg", 0), ("sb3", 1), ("cleanrl", 1)):
        _, A = _case(refs, profile, "ppo_objective")
        raw = A["advantages"]
        expected = (raw - raw.mean()) / (raw.std(ddof=ddof) + 1e-8)
        np.testing.assert_allclose(A["advantages_normalized"], expected, **CLOSE)


def test_ppo_value_loss_per_profile(refs):
    """minipg: mean max(e, e_clip); sb3: mean e_clip (clipped alone); cleanrl: 0.5 mean max."""
    for profile in PROFILES:
        m, A = _case(refs, profile, "ppo_value_clip")
        V = _forward(m, A, "value", A["obs"])[:, 0]
        R, V_old, eps_v = A["returns"], A["values_old"], m["hyperparameters"]["clip_eps_value"]
        V_clip = V_old + np.clip(V - V_old, -eps_v, eps_v)
        e, e_clip = (V - R) ** 2, (V_clip - R) ** 2
        k = 0.5 if profile == "cleanrl" else 1.0
        clipped = np.mean(e_clip) if profile == "sb3" else np.mean(np.maximum(e, e_clip))
        np.testing.assert_allclose(A["value_loss"], k * np.mean(e), **CLOSE)
        np.testing.assert_allclose(A["value_loss_clipped"], k * clipped, **CLOSE)


def _sac_log_prob(profile, m, A, obs, eps):
    """log pi and the action as each library computes them from the policy network."""
    out = _forward(m, A, "policy", obs)
    d = out.shape[1] // 2
    mean, log_std = out[:, :d], out[:, d:]
    if profile == "cleanrl":
        log_std = -5 + 0.5 * (2 - (-5)) * (np.tanh(log_std) + 1)
    low, high = m["hyperparameters"]["low"], m["hyperparameters"]["high"]
    scale = (high - low) / 2
    u = mean + np.exp(log_std) * eps
    y = np.tanh(u)
    gauss = -0.5 * eps ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    if profile == "minipg":        # exact, density of the action in the box
        return (gauss - np.log(1 - y ** 2) - np.log(scale)).sum(-1), low + (y + 1) * scale
    if profile == "sb3":           # density of the normalised action tanh(u), epsilon 1e-6
        return (gauss - np.log(1 - y ** 2 + 1e-6)).sum(-1), y
    return (gauss - np.log(scale * (1 - y ** 2) + 1e-6)).sum(-1), low + (y + 1) * scale


def test_sac_log_prob_action_and_temperature_loss_per_profile(refs):
    for profile in PROFILES:
        m, A = _case(refs, profile, "sac_policy")
        log_prob, action = _sac_log_prob(profile, m, A, A["obs"], A["eps"])
        np.testing.assert_allclose(A["log_prob"], log_prob, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(A["action"], action, **CLOSE)
        m, A = _case(refs, profile, "sac_temperature")
        log_prob, _ = _sac_log_prob(profile, m, A, A["obs"], A["eps"])
        log_alpha, target = A["log_alpha"][0], m["hyperparameters"]["target_entropy"]
        multiplier = log_alpha if profile == "sb3" else np.exp(log_alpha)
        np.testing.assert_allclose(A["J_alpha"], np.mean(-multiplier * (log_prob + target)),
                                   rtol=1e-10)
        d_multiplier = 1.0 if profile == "sb3" else np.exp(log_alpha)
        np.testing.assert_allclose(A["grad.J_alpha.log_alpha"],
                                   [np.mean(-d_multiplier * (log_prob + target))], rtol=1e-10)


def test_sac_critic_loss_scale_per_profile(refs):
    for profile, k in (("minipg", 0.5), ("sb3", 0.5), ("cleanrl", 1.0)):
        for name, target in (("sac_q_twin", "y"), ("sac_q", "q_hat")):
            _, A = _case(refs, profile, name)
            for i in (1, 2):
                np.testing.assert_allclose(A[f"J_Q{i}"], k * np.mean((A[f"q{i}"] - A[target]) ** 2),
                                           **CLOSE)


# ------------------------------------------------------------------ usage

def test_an_unknown_profile_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(reference.ReferenceUsageError, match="accepted: minipg, sb3, cleanrl"):
        reference.write(tmp_path / "x", profile="baselines")
    with pytest.raises(SystemExit):                       # argparse's choices
        main(["reference", "--out", str(tmp_path / "y"), "--profile", "baselines"])
    assert "invalid choice" in capsys.readouterr().err
    assert main(["reference", "--check", str(tmp_path), str(tmp_path), "--profile", "sb3"]) == 2
    assert "--profile is for --out" in capsys.readouterr().err


def test_cases_written_in_different_profiles_are_not_compared(refs, capsys):
    rows, _ = reference.check(refs / "minipg", refs / "sb3", only=["ppo_clip", "sac_q"])
    assert [(r.case, r.array, r.passed) for r in rows] == [
        ("ppo_clip", "(manifest)", False), ("sac_q", "(manifest)", False)]
    assert "profile 'minipg' in DIR_A, 'sb3' in DIR_B" in rows[0].note
    assert main(["reference", "--check", str(refs / "sb3"), str(refs / "sb3")]) == 0
    assert "FAIL" not in capsys.readouterr().out


# ------------------------------------------------------------------ subset check

def _partial(refs, tmp_path, wanted):
    """A candidate that exposes only some arrays (bare .npy files, no manifest)."""
    out = tmp_path / "partial"
    for case, arrays in wanted.items():
        (out / case).mkdir(parents=True)
        for a in arrays:
            shutil.copy(refs / "sb3" / case / f"{a}.npy", out / case / f"{a}.npy")
    return out


def test_arrays_selects_a_subset_and_lists_what_it_did_not_check(refs, tmp_path, capsys):
    cand = _partial(refs, tmp_path, {"sac_q_twin": ["J_Q1", "y"], "ppo_objective": ["objective"]})
    ref = refs / "sb3"
    args = ["reference", "--check", str(ref), str(cand), "--only", "sac_q_twin", "ppo_objective",
            "--arrays", "sac_q_twin/J_Q1", "y", "objective"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3/3 arrays agree" in out and "2/2 cases pass" in out
    m = json.loads((ref / "sac_q_twin" / "manifest.json").read_text())
    n_unchecked = len(m["arrays"]) - 2 + len(json.loads(
        (ref / "ppo_objective" / "manifest.json").read_text())["arrays"]) - 1
    assert f"{n_unchecked} not checked" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("sac_q_twin (not selected"))
    assert "J_Q2" in line and "grad.J_Q1.critic1.layer0.W" in line and " y," not in line
    # a selected array that differs fails, naming it
    np.save(cand / "sac_q_twin" / "J_Q1.npy", np.load(cand / "sac_q_twin" / "J_Q1.npy") * 2)
    rows, _ = reference.check(ref, cand, only=["sac_q_twin"], arrays=["J_Q1", "y"])
    assert [(r.array, r.passed) for r in rows if r.checked] == [("J_Q1", False), ("y", True)]
    # a selected output the candidate lacks is a failure, not a silent skip
    rows, _ = reference.check(ref, cand, only=["sac_q_twin"], arrays=["q1"])
    assert [(r.array, r.passed) for r in rows if r.checked] == [("q1", False)]
    assert "q1.npy is missing" in rows[[r.array for r in rows].index("q1")].note


def test_a_pattern_that_selects_nothing_is_a_usage_error(refs, capsys):
    assert main(["reference", "--check", str(refs / "sb3"), str(refs / "sb3"),
                 "--arrays", "J_Q3"]) == 2
    assert "--arrays J_Q3: selects no array" in capsys.readouterr().err


def test_present_only_checks_what_the_candidate_has(refs, tmp_path, capsys):
    cand = _partial(refs, tmp_path, {"sac_policy": ["J_pi", "log_prob"]})
    assert main(["reference", "--check", str(refs / "sb3"), str(cand)]) == 1   # the rest missing
    capsys.readouterr()
    assert main(["reference", "--check", str(refs / "sb3"), str(cand), "--present-only"]) == 0
    out = capsys.readouterr().out
    assert "2/2 arrays agree" in out and "1/1 cases pass" in out
    assert "gae (case absent in DIR_B): all 6 arrays" in out
    assert "sac_policy (absent in DIR_B): " in out and "grad.J_pi.eps" in out


def test_inputs_the_candidate_omits_are_listed_not_silently_skipped(refs, tmp_path):
    cand = tmp_path / "cand"
    shutil.copytree(refs / "minipg" / "gae", cand / "gae")
    (cand / "gae" / "values.npy").unlink()
    rows, _ = reference.check(refs / "minipg", cand, only=["gae"])
    unchecked = [(r.array, r.note) for r in rows if not r.checked]
    assert unchecked == [("values", "absent in DIR_B")]
    assert all(r.passed for r in rows)
    assert "gae (absent in DIR_B): values" in reference.report(rows, [])


def test_every_convention_states_each_of_its_values():
    for name, conv in CONVENTIONS.items():
        assert "minipg" in conv.values, name
        for profile in PROFILES:
            sentence = conv.statement(conv.value(profile))
            assert sentence.endswith(".") and len(sentence) > 40, (name, profile)
