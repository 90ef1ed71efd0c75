"""Notifier lists: the Python twin of QEMU's util/notify.c.

A Notifier carries a ``notify`` callable, as the C struct carries a function
pointer.  QLIST_REMOVE finds the list through the embedded list node; here the
notifier remembers the list it was added to, so notifier_remove() keeps the
C signature.
"""

from __future__ import annotations

from typing import Any, Callable, Optional


class Notifier:
    __slots__ = ('notify', 'node')

    def __init__(self, notify: Optional[Callable[['Notifier', Any], None]] = None):
        self.notify = notify
        self.node: Optional[list] = None   # the list holding us, if any


class NotifierList:
    __slots__ = ('notifiers',)

    def __init__(self) -> None:
        self.notifiers: list = []


class NotifierWithReturn:
    __slots__ = ('notify', 'node')

    def __init__(self,
                 notify: Optional[Callable[['NotifierWithReturn', Any], int]] = None):
        self.notify = notify
        self.node: Optional[list] = None


class NotifierWithReturnList:
    __slots__ = ('notifiers',)

    def __init__(self) -> None:
        self.notifiers: list = []


def notifier_list_add(lst: NotifierList, notifier: Notifier) -> None:
    # QLIST_INSERT_HEAD: the newest notifier runs first
    lst.notifiers.insert(0, notifier)
    notifier.node = lst.notifiers


def notifier_remove(notifier: Notifier) -> None:
    notifier.node.remove(notifier)
    notifier.node = None


def notifier_list_notify(lst: NotifierList, data: Any) -> None:
    # a copy, so that a notifier may remove itself (QLIST_FOREACH_SAFE)
    for notifier in list(lst.notifiers):
        notifier.notify(notifier, data)


def notifier_with_return_list_add(lst: NotifierWithReturnList,
                                  notifier: NotifierWithReturn) -> None:
    lst.notifiers.insert(0, notifier)
    notifier.node = lst.notifiers


def notifier_with_return_remove(notifier: NotifierWithReturn) -> None:
    notifier.node.remove(notifier)
    notifier.node = None


def notifier_with_return_list_notify(lst: NotifierWithReturnList,
                                     data: Any) -> int:
    """Run the notifiers until one returns non-zero; return that value."""
    ret = 0
    if not lst.notifiers:
        return ret      # every write asks; copying an empty list costs
    for notifier in list(lst.notifiers):
        ret = notifier.notify(notifier, data)
        if ret != 0:
            break
    return ret
