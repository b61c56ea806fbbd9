module.exports = function(app) {};
