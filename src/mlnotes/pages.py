def is_ml_notes(root):
    return False


def refresh(root):
    return []
