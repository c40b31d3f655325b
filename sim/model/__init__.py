"""The model of the plants: the world, floors, supply, offices and the middleware pipes."""
