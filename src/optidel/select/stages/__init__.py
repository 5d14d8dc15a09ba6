"""The stages of ``optidel select``, one module each; :mod:`optidel.select.pipeline` runs them in order.

patches (proposal + embedding, sharded, distributed) -> ranking (k-means, scores, image embeddings) -> images
(mosaics, single patches or copied pool images) -> manifest -> report. Each stage reads and writes its cache through
:class:`optidel.select.stage_cache.StageCache`.
"""
