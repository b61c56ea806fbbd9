module.exports = function(Note) {
  Note.observe('before save', function(ctx, next) { next(); });
};
