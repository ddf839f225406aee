"""The surge planner: what a staffing plan does to each ward's backlog and overdue dossiers.

scenario.py reads the scenario and staffing files; measure.py takes service times and rates
from the read model; rules.py is the engine's own legal clock and routing as the simulation
calls them; simulation.py runs the SimPy model; report.py writes the tables, JSON and charts.
"""
