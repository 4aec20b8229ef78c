"""Message routing: label filters and subscriptions between pools."""

from drop.bus._filter import LineFilter, compile_filter, label_of
from drop.bus._local import Deliverable, Subscription

__all__ = ["Deliverable", "LineFilter", "Subscription", "compile_filter", "label_of"]
