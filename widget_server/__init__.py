"""Apprenticeship matchmaking widget and API: "Je candidate" and "Rendez-vous apprentissage"."""
