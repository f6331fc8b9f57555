"""Many seeds in one process (issue 17): K seeds of one config trained together on stacked tensors."""
