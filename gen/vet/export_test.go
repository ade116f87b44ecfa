package vet

// LoadMode is what Check needs of the packages it is given.
const LoadMode = loadMode
