pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.charts",
    "tests.fixtures.containers",
    "tests.fixtures.engine",
    "tests.fixtures.secrets",
    "tests.fixtures.repos",
    "tests.fixtures.github",
    "tests.fixtures.jupyterhub",
    "tests.fixtures.helm_standin",
]
