from __future__ import annotations

import pytest

from helpers import Holder, Keys


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def holder() -> Holder:
    return Holder()
