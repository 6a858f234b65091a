"""roadseg's version, in the lowest layer, so every stage reads it without importing the root
package (whose public API names every stage: see .importlinter)."""

__version__ = "0.1.0"
