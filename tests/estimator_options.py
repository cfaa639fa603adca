"""Options that make every estimator multi-particle, shared by the tests of estimators,
training and compilation (pytest puts ``tests/`` on the path)."""

# Options that make every estimator multi-particle (K = 6 in all), so that reductions matter.
OPTIONS = {
    "elbo": {"num_particles": 6},
    "meanfield": {"num_particles": 6},
    "score": {"num_particles": 6},
    "renyi": {"alpha": 0.5, "num_particles": 6},
    "iwae": {"num_particles": 6},
    "vrmax": {"num_particles": 6},
    "miwae": {"num_outer": 2, "num_inner": 3},
    "ciwae": {"beta": 0.3, "num_particles": 6},
    "piwae": {"num_outer": 2, "num_inner": 3},
    "stl": {"num_particles": 6},
    "dreg": {"num_particles": 6},
    "vimco": {"num_particles": 6},
}
