"""Many exports and measurements, and corpus inference, through one executor (``edgesdk.executor``).

``matrix`` reads a sweep matrix, ``runner`` runs its cells (export -> validate -> profile) with a
content-hash cache, ``report`` writes the table and plot; ``corpus`` runs a bundle over a folder
of inputs (``edgesdk map``). Nothing is imported here, so ``edgesdk.sweep.corpus`` stays torch-free.
"""
