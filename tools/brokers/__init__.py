from tools.brokers.base import Broker, BracketRequest, BrokerError, order_id

__all__ = ["BracketRequest", "Broker", "BrokerError", "order_id"]
