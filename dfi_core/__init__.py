"""Small core shared by `training` and `service`: image preprocessing and (later) the bundle format.

Depends on numpy and Pillow only, never on torch, so the service can import it without the training stack.
"""
