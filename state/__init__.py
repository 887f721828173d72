from state.lifecycle import AnalysisState, StrategyTask, serializable_models
from state.settings import Settings

__all__ = ["AnalysisState", "Settings", "StrategyTask", "serializable_models"]
