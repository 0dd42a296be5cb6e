"""The base of every handle: close(), with blocks, and borrowing.

Handles are freed by close() (or a with block, or the garbage collector). An object that borrows
a handle (an optimizer its model, a trainer its student, loss, optimizer and teachers, a batcher
its dataset, an array viewing a dataset's images, a trainer's regressor) keeps it alive; close()
on a handle still lent out defers the free until the last borrower is gone. Pointers the library
lends (kd_dataset_images, kd_trainer_regressor) are never freed from Python.
"""
import weakref

from .capi import lib


class Handle:
    _destroy = None
    _hv = None  # the C handle; None before the constructor succeeded and after close()
    _owned = True  # False for a handle the library lends (a trainer's regressor)
    _lenders = ()  # the objects whose handles this one borrows, kept alive while it is open
    _borrowers = ()  # weak references to the objects that borrow this handle
    _closing = False  # close() was called while the handle was lent out

    def __init__(self, handle):
        self._hv = handle

    @classmethod
    def _lent(cls, handle, owner):
        """A wrapper of a handle the library lends: keeps owner open, never frees the handle."""
        obj = cls.__new__(cls)
        Handle.__init__(obj, handle)
        obj._owned = False
        obj._borrow(owner)
        return obj

    def _borrow(self, lender):
        """Keeps lender alive, and its handle open, while this handle is open."""
        self._lenders = list(self._lenders) + [lender]
        lender._lend(self)

    def _lend(self, borrower):
        """Defers close() while borrower (which keeps self alive) is alive and open."""
        owner = weakref.ref(self)  # not self: the callback must not keep it alive

        def returned(_ref):
            o = owner()
            if o is not None and o._closing:
                o.close()

        self._borrowers = [r for r in self._borrowers if r() is not None]
        self._borrowers.append(weakref.ref(borrower, returned))

    def _lent_out(self):
        for ref in self._borrowers:
            b = ref()
            if b is not None and getattr(b, "_hv", True):  # an open handle, or a view
                return True
        return False

    def close(self):
        """Frees the handle, now, or when the last object that borrows it is closed or gone."""
        if not self._hv:
            return
        if self._lent_out():
            self._closing = True
            return
        if self._owned:
            getattr(lib(), self._destroy)(self._hv)
        self._hv = None
        lenders, self._lenders = self._lenders, ()
        for lender in lenders:
            if lender._closing:
                lender.close()

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def handle(self):
        return self._hv

    @property
    def _h(self):
        """The handle, for a call: a closed object raises ValueError (as a closed file does)."""
        if not self._hv:
            raise ValueError("operation on a closed kd.%s" % type(self).__name__)
        return self._hv

    @property
    def closed(self):
        """True once the handle was freed (close() with nothing borrowing it)."""
        return not self._hv

    @classmethod
    def _wrap(cls, handle):
        """An object of cls owning handle, without running cls.__init__."""
        obj = cls.__new__(cls)
        Handle.__init__(obj, handle)
        return obj

    def __repr__(self):
        return "<kd.%s %s>" % (type(self).__name__, "closed" if not self._hv else hex(self._hv))
