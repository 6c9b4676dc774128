"""Scoring: answer extraction and metric profiles. Pure functions of text; imports no deep-learning framework."""
