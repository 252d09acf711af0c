"""Images: references, image configs, the on-disk layer store and docker-archive tars.

reference.py  image names and ids, parsed and shown the way dockerd does (pure)
changes.py    `--change` Dockerfile lines applied to a container config (pure)
config.py     image config JSON for `docker import`, parsing, history (pure)
layers.py     LayerStore: content-addressed layer tars + extracted overlayfs lower dirs
archive.py    `docker save` / `docker load` tars (Engine 25+ and legacy layouts)

Sync code only: no trio, no LMDB, no HTTP. The engine keeps image records itself.
"""
