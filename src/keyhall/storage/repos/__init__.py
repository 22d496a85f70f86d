"""The SQLAlchemy repositories of the core's ports (``core.ports``): one module per table family,
over the shared helpers of ``_query``. ``storage.unit_of_work`` holds them together."""
