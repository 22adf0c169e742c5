"""The plugin runs stt-core's conformance suite: one fixture names the provider."""

import pytest
from stt_plugin_energy import EnergyProvider

from stt_core.testing.conformance import ProviderConformance


class TestEnergyProvider(ProviderConformance):
    @pytest.fixture
    def provider(self):
        return EnergyProvider(threshold_db=-30)
