"""Slide text: what each keyframe shows as text (OCR), its title, and the chapters titles make."""
