"""Environments: gymnasium glue and the exact-gradient test beds (tabular MDP, LQR)."""
