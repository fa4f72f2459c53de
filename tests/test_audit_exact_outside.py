"""verification/audit_outside.py's adapters around stable-baselines3 (skipped when it is
not installed), with small samples: SB3's own GAE passes, its time-limit bootstrap left
out fails named; a stock A2C.train() fails naming the gamma^t-free quantity and passes
with the buffer's advantages times gamma^t.  The full run is
verification/results/audit_outside.md."""

import importlib.util
from pathlib import Path

import pytest

from minipg.audit import exact

pytest.importorskip("torch")
pytest.importorskip("stable_baselines3")

SCRIPT = Path(__file__).resolve().parent.parent / "verification" / "audit_outside.py"


@pytest.fixture(scope="module")
def outside():
    spec = importlib.util.spec_from_file_location("audit_outside", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sb3_gae_passes_and_without_the_time_limit_bootstrap_fails(outside):
    assert exact.check("gae", outside.sb3_gae, n_episodes=500).passed
    broken = exact.check("gae", outside.sb3_gae_no_truncation_bootstrap, n_episodes=500)
    assert not broken.passed and "no bootstrap at truncations" in broken.diagnosis


def test_stock_a2c_train_drops_gamma_t_and_passes_with_it(outside):
    stock = exact.check("gae_policy_gradient", outside.SB3A2CGradient(), n_batches=100)
    assert not stock.passed and "eta_1" in stock.diagnosis
    fixed = exact.check("gae_policy_gradient", outside.SB3A2CGradient(gamma_t=True),
                        n_batches=100)
    assert fixed.passed, str(fixed)
